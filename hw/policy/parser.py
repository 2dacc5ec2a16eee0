"""Header parser: Ethernet (+ any number of 802.1Q/802.1ad tags), IPv4 (IHL,
lengths, header checksum, flags), IPv6 (+ hop-by-hop, routing, destination
options and fragment headers), TCP/UDP ports and flags, ESP/AH SPI and
sequence number.

It follows `latchnic.sim.packet.parse_frame` check for check: every length
field is compared with the bytes present, and a frame that fails any check
comes out `malformed` (an IPv6 jumbogram: `unsupported`), never with
trusted selectors. The result is one `ParseResult` per frame, after the
frame's last beat (length checks need the frame length).

Why a 16-bit walker: every header in the walk starts on an even byte
(Ethernet 14, VLAN tags 4, IPv4 IHL x 4, IPv6 extension headers x 8), so the
parser reads the header bytes one big-endian 16-bit word per cycle from the
64-bit beat, whatever the nesting, and then skips the rest of the frame a
beat per cycle. Cost: (header bytes / 2) + (remaining beats) + 1 cycles per
frame: 31 cycles for a 64-byte TCP/IPv4 frame, about 4 Mpps at 125 MHz
(1 GbE line rate is 1.49 Mpps). A wider walker is the step for 10 GbE.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from latchnic.hw.stream import packet_signature
from latchnic.sim.drops import REASON_CODES

P = 18          # byte positions and lengths (frames up to 256 KiB)


class Status(enum.Enum, shape=2):
    OK = 0
    NON_IP = 1
    MALFORMED = 2
    UNSUPPORTED = 3


result_layout = data.StructLayout({
    "status": Status,
    "v6": 1,                 # 0: IPv4, 1: IPv6
    "src": 128,              # IPv4 in the low 32 bits
    "dst": 128,
    "proto": 8,              # upper-layer protocol (after IPv6 extension headers)
    "ports_valid": 1,        # 0: ports OPAQUE
    "sport": 16,
    "dport": 16,
    "tcp_flags": 6,
    "is_fragment": 1,
    "first_fragment": 1,
    "has_routing": 1,
    "l2_len": 16,
    "hdr_len": 16,           # IP header incl. options / extension headers
    "l3_end": P,             # end of the IP packet (frame may carry padding)
    "frame_len": P,
    "spi_valid": 1,          # ESP/AH header present (not a fragment, bytes within the packet)
    "spi": 32,
    "seq": 32,
    "ah_nh": 8,
    "ah_len": 8,
})

MALFORMED_CODE = REASON_CODES["malformed"]
UNSUPPORTED_CODE = REASON_CODES["unsupported"]


class HeaderParser(wiring.Component):
    """`i`: the packet stream (hw/stream.py); `o`: one result per frame."""

    i: In(packet_signature(64))
    o: Out(stream.Signature(result_layout))

    def elaborate(self, platform):
        m = Module()

        # ---- beat register and 16-bit word reader
        bdata = Signal(64)
        bkeep = Signal(8)
        blast = Signal()
        bvalid = Signal()
        wi = Signal(2)
        eof = Signal()
        pos = Signal(P)          # byte position of the current word
        flen = Signal(P)

        lanes = Signal(16)
        m.d.comb += lanes.eq(bdata.word_select(wi, 16))
        word = Signal(16)        # big-endian value of the two bytes
        b0 = Signal(8)
        b1 = Signal(8)
        m.d.comb += [b0.eq(lanes[0:8]), b1.eq(lanes[8:16]), word.eq(Cat(b1, b0))]
        keep_hi = Signal()       # second byte of the current word present
        next_has = Signal()      # the beat has bytes after this word
        m.d.comb += [keep_hi.eq(bkeep.bit_select(wi * 2 + 1, 1)),
                     next_has.eq(Mux(wi == 3, 0, bkeep.bit_select(wi * 2 + 2, 1)))]
        wok = Signal()
        trunc_now = Signal()
        m.d.comb += [wok.eq(bvalid & ~eof & keep_hi),
                     trunc_now.eq(eof | (bvalid & ~keep_hi))]
        consume = Signal()
        take = Signal()
        m.d.comb += take.eq(consume & ~next_has)

        popcount = Signal(4)
        m.d.comb += popcount.eq(sum(bkeep[k] for k in range(8)))

        # ---- per-frame state
        etype6 = Signal()
        nonip = Signal()
        mal = Signal()
        trunc = Signal()
        unsup = Signal()
        l3 = Signal(16)
        v6 = Signal()
        ihl = Signal(6)
        total = Signal(16)
        fragw = Signal(16)
        cs = Signal(16)
        cs_c = Signal()          # the carry out of cs, not yet added back in
        plen = Signal(16)
        nh = Signal(8)
        nnh = Signal(8)
        src = Signal(128)
        dst = Signal(128)
        end = Signal(P)
        off = Signal(P)
        next_off = Signal(P)
        ext_over = Signal()          # the extension header runs past the packet's end
        is_frag = Signal()
        first = Signal(init=1)
        routing = Signal()
        ports_valid = Signal()
        sport = Signal(16)
        dport = Signal(16)
        flags = Signal(6)
        spi_valid = Signal()
        spi = Signal(32)
        seq = Signal(32)
        ah_nh = Signal(8)
        ah_len = Signal(8)
        frame_regs = [etype6, nonip, mal, trunc, unsup, l3, v6, ihl, total, fragw, cs, cs_c, plen, nh,
                      nnh, src, dst, end, off, next_off, is_frag, first, routing, ports_valid,
                      sport, dport, flags, spi_valid, spi, seq, ah_nh, ah_len, eof, pos, flen]

        # pos - l3 and pos - off, as counters (timing: no subtract before the
        # field selects): cleared where l3 / off are set, +2 per word. They
        # are read only in the header states, where they stay below 64, and
        # in EXTSKIP (below 2048)
        rel_l3 = Signal(8)
        rel_off = Signal(12)
        ext_last = Signal(11)        # rel_off of an extension header's last word
        # timing: end - off, the bytes left after `off`, kept in a register
        # set with them (room >= 0 wherever it is used: a frame whose end is
        # before off has gone to SKIP), so that the length checks compare a
        # register with a constant or with a field of the word, no adder between
        room = Signal(P)
        # header checksum, timing: one 16-bit add per word, its carry added
        # back in with the next word (the carry-in trick: one carry chain), the
        # last one in the check. cs + 2^16 cs_c is congruent to the one's
        # complement sum mod 0xFFFF and is (0, 0) only if every word is 0, so
        # the folded sum is 0xFFFF exactly when cs + cs_c == 0xFFFF
        cs_sum = Signal(18)
        m.d.comb += cs_sum.eq(Cat(cs_c, cs) + Cat(cs_c, word))
        cs_ok = Signal()
        m.d.comb += cs_ok.eq(Mux(cs_c, cs == 0xFFFE, cs == 0xFFFF))

        # ---- beat movement. A second beat register (`n*`) takes the next
        # beat while the current one is in use, so `i.ready` is a register
        # and an FSM decode (timing: the word-by-word consume logic, deep,
        # drives only this block's beat registers, not the input's); a beat
        # moves on every cycle the current one is freed, as before
        in_out_state = Signal()
        skip_take = Signal()
        ndata = Signal(64)
        nkeep = Signal(8)
        nlast = Signal()
        nvalid = Signal()
        m.d.comb += self.i.ready.eq(~nvalid & ~in_out_state)
        accept = self.i.valid & self.i.ready
        with m.If((~bvalid | take | skip_take) & ~in_out_state):
            with m.If(nvalid):
                m.d.sync += [bdata.eq(ndata), bkeep.eq(nkeep), blast.eq(nlast), bvalid.eq(1),
                             nvalid.eq(0)]
            with m.Elif(accept):
                m.d.sync += [bdata.eq(self.i.payload.data), bkeep.eq(self.i.payload.keep),
                             blast.eq(self.i.payload.last), bvalid.eq(1)]
            with m.Else():
                m.d.sync += bvalid.eq(0)
        with m.Elif(accept):
            m.d.sync += [ndata.eq(self.i.payload.data), nkeep.eq(self.i.payload.keep),
                         nlast.eq(self.i.payload.last), nvalid.eq(1)]
        with m.If(take | skip_take):
            m.d.sync += [wi.eq(0), flen.eq(flen + popcount)]
            with m.If(blast):
                m.d.sync += eof.eq(1)
        with m.Elif(consume):
            m.d.sync += wi.eq(wi + 1)
        with m.If(consume):
            m.d.sync += [pos.eq(pos + 2), rel_l3.eq(rel_l3 + 2), rel_off.eq(rel_off + 2)]

        def bad(flag):
            m.d.sync += flag.eq(1)
            m.next = "SKIP"

        def word_state(body):
            with m.If(wok):
                m.d.comb += consume.eq(1)
                body()
            with m.Elif(trunc_now):
                bad(trunc)

        with m.FSM():
            with m.State("ETH"):
                def eth():
                    with m.If(pos >= 12):
                        with m.If((word == 0x8100) | (word == 0x88A8)):
                            m.next = "VLAN"
                        with m.Else():
                            m.d.sync += [l3.eq(pos + 2), rel_l3.eq(0)]
                            with m.If(word == 0x0800):
                                m.next = "IP0"
                            with m.Elif(word == 0x86DD):
                                m.d.sync += etype6.eq(1)
                                m.next = "IP0"
                            with m.Else():
                                m.d.sync += nonip.eq(1)
                                m.next = "SKIP"
                word_state(eth)

            with m.State("VLAN"):
                def vlan():
                    m.next = "ETH"
                word_state(vlan)

            with m.State("IP0"):
                def ip0():
                    with m.If(b0[4:8] == 4):
                        m.d.sync += [ihl.eq(b0[0:4] * 4), cs.eq(word), cs_c.eq(0)]
                        with m.If(b0[0:4] < 5):
                            bad(mal)
                        with m.Else():
                            m.next = "V4"
                    with m.Elif(b0[4:8] == 6):
                        m.d.sync += v6.eq(1)
                        m.next = "V6"
                    with m.Else():
                        bad(mal)
                word_state(ip0)

            with m.State("V4"):
                def v4():
                    m.d.sync += [cs.eq(cs_sum[1:17]), cs_c.eq(cs_sum[17])]
                    with m.Switch(rel_l3):
                        with m.Case(2):
                            m.d.sync += total.eq(word)
                        with m.Case(6):
                            m.d.sync += fragw.eq(word)
                        with m.Case(8):
                            m.d.sync += nh.eq(b1)
                        with m.Case(12, 14):
                            m.d.sync += src.eq(Cat(word, src[:112]))
                        with m.Case(16, 18):
                            m.d.sync += dst.eq(Cat(word, dst[:112]))
                    with m.If(rel_l3 + 2 == ihl):
                        m.next = "V4CHK"
                word_state(v4)

            with m.State("V4CHK"):
                m.d.sync += [end.eq(l3 + total), off.eq(pos), rel_off.eq(0), room.eq(l3 + total - pos),
                             is_frag.eq((fragw[0:13] != 0) | fragw[13]),
                             first.eq(fragw[0:13] == 0)]
                with m.If((total < ihl) | ~cs_ok | fragw[15]):
                    bad(mal)
                with m.Else():
                    m.next = "L4D"

            with m.State("V6"):
                def v6w():
                    with m.Switch(rel_l3):
                        with m.Case(4):
                            m.d.sync += plen.eq(word)
                        with m.Case(6):
                            m.d.sync += nh.eq(b0)
                        with m.Case(*range(8, 24, 2)):
                            m.d.sync += src.eq(Cat(word, src[:112]))
                        with m.Case(*range(24, 40, 2)):
                            m.d.sync += dst.eq(Cat(word, dst[:112]))
                    with m.If(rel_l3 == 38):
                        m.next = "V6CHK"
                word_state(v6w)

            with m.State("V6CHK"):
                m.d.sync += [end.eq(l3 + 40 + plen), off.eq(pos), rel_off.eq(0), room.eq(plen)]
                with m.If(plen == 0):
                    bad(unsup)
                with m.Else():
                    m.next = "EXTD"

            with m.State("EXTD"):
                with m.If((nh == 0) | (nh == 43) | (nh == 60) | (nh == 44)):
                    with m.If(room < 8):
                        bad(mal)
                    with m.Else():
                        m.next = "EXT0"
                with m.Else():
                    m.next = "L4D"

            with m.State("EXT0"):
                def ext0():
                    m.d.sync += nnh.eq(b0)
                    with m.If(nh == 44):
                        m.d.sync += [next_off.eq(off + 8), ext_last.eq(6),
                                     ext_over.eq(0)]   # EXTD checked 8
                        m.next = "EXT1"
                    with m.Else():
                        hlen = (b1 + 1) * 8
                        # compared with room (end - off), registered: EXTSKIP acts on it
                        m.d.sync += [next_off.eq(off + hlen), ext_last.eq(b1 * 8 + 6),
                                     ext_over.eq(hlen > room)]
                        with m.If(nh == 43):
                            m.d.sync += routing.eq(1)
                        m.next = "EXTSKIP"
                word_state(ext0)

            with m.State("EXT1"):
                def ext1():
                    m.d.sync += [is_frag.eq(1), first.eq(word[3:16] == 0)]
                    m.next = "EXTSKIP"
                word_state(ext1)

            with m.State("EXTSKIP"):
                # timing: the length check of EXT0 acts here, a cycle later,
                # so that the word select and compare do not drive the FSM
                with m.If(ext_over):
                    bad(mal)
                def extskip():
                    with m.If(rel_off == ext_last):     # pos + 2 == next_off
                        m.d.sync += [nh.eq(nnh), off.eq(next_off), rel_off.eq(0),
                                     room.eq(end - next_off)]
                        with m.If(is_frag):
                            m.next = "L4D"     # what follows a fragment header is opaque
                        with m.Else():
                            m.next = "EXTD"
                with m.Else():
                    word_state(extskip)

            with m.State("L4D"):
                with m.If(~first):
                    m.next = "SKIP"
                with m.Elif(nh == 6):
                    with m.If(room < 20):
                        with m.If(is_frag):
                            m.next = "SKIP"   # a tiny first fragment: ports stay OPAQUE
                        with m.Else():
                            bad(mal)
                    with m.Else():
                        m.next = "TCP"
                with m.Elif(nh == 17):
                    with m.If(room < 8):
                        with m.If(is_frag):
                            m.next = "SKIP"
                        with m.Else():
                            bad(mal)
                    with m.Else():
                        m.next = "UDP"
                with m.Elif((nh == 50) & ~is_frag & (room >= 8)):
                    m.next = "ESP"
                with m.Elif((nh == 51) & ~is_frag & (room >= 12)):
                    m.next = "AH"
                with m.Else():
                    m.next = "SKIP"

            with m.State("TCP"):
                def tcp():
                    with m.Switch(rel_off):
                        with m.Case(0):
                            m.d.sync += sport.eq(word)
                        with m.Case(2):
                            m.d.sync += dport.eq(word)
                        with m.Case(12):
                            doff = word[12:16] * 4
                            m.d.sync += [flags.eq(word[0:6]), ports_valid.eq(1)]
                            with m.If((doff < 20) | ((doff > room) & ~is_frag)):
                                bad(mal)
                            with m.Else():
                                m.next = "SKIP"
                word_state(tcp)

            with m.State("UDP"):
                def udp():
                    with m.Switch(rel_off):
                        with m.Case(0):
                            m.d.sync += sport.eq(word)
                        with m.Case(2):
                            m.d.sync += dport.eq(word)
                        with m.Case(4):
                            m.d.sync += ports_valid.eq(1)
                            with m.If(~is_frag & (word != room)):
                                bad(mal)
                            with m.Else():
                                m.next = "SKIP"
                word_state(udp)

            with m.State("ESP"):
                def esp():
                    with m.Switch(rel_off):
                        with m.Case(0, 2):
                            m.d.sync += spi.eq(Cat(word, spi[:16]))
                        with m.Case(4, 6):
                            m.d.sync += seq.eq(Cat(word, seq[:16]))
                    with m.If(rel_off == 6):
                        m.d.sync += spi_valid.eq(1)
                        m.next = "SKIP"
                word_state(esp)

            with m.State("AH"):
                def ah():
                    with m.Switch(rel_off):
                        with m.Case(0):
                            m.d.sync += [ah_nh.eq(b0), ah_len.eq(b1)]
                        with m.Case(4, 6):
                            m.d.sync += spi.eq(Cat(word, spi[:16]))
                        with m.Case(8, 10):
                            m.d.sync += seq.eq(Cat(word, seq[:16]))
                    with m.If(rel_off == 10):
                        m.d.sync += spi_valid.eq(1)
                        m.next = "SKIP"
                word_state(ah)

            with m.State("SKIP"):
                with m.If(eof):
                    m.next = "OUT"
                with m.Elif(bvalid):
                    m.d.comb += skip_take.eq(1)
                    with m.If(blast):
                        m.next = "OUT"

            with m.State("OUT"):
                m.d.comb += [in_out_state.eq(1), self.o.valid.eq(1)]
                with m.If(self.o.ready):
                    for r in frame_regs:
                        m.d.sync += r.eq(r.init)
                    m.next = "ETH"

        # ---- the result, stable while OUT waits for ready
        o = self.o.payload
        with m.If(unsup):
            m.d.comb += o.status.eq(Status.UNSUPPORTED)
        with m.Elif(mal | trunc):
            m.d.comb += o.status.eq(Status.MALFORMED)
        with m.Elif(nonip):
            m.d.comb += o.status.eq(Status.NON_IP)
        with m.Elif((end > flen) | (v6 != etype6)):
            m.d.comb += o.status.eq(Status.MALFORMED)
        with m.Else():
            m.d.comb += o.status.eq(Status.OK)
        m.d.comb += [
            o.v6.eq(v6), o.src.eq(src), o.dst.eq(dst), o.proto.eq(nh),
            o.ports_valid.eq(ports_valid), o.sport.eq(sport), o.dport.eq(dport),
            o.tcp_flags.eq(flags), o.is_fragment.eq(is_frag), o.first_fragment.eq(first),
            o.has_routing.eq(routing), o.l2_len.eq(l3), o.hdr_len.eq(off - l3), o.l3_end.eq(end),
            o.frame_len.eq(flen), o.spi_valid.eq(spi_valid), o.spi.eq(spi), o.seq.eq(seq),
            o.ah_nh.eq(ah_nh), o.ah_len.eq(ah_len),
        ]
        return m
