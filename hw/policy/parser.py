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
beat per cycle. Cost: a cycle per header word, one or two between headers
for their checks, a cycle per beat not yet read and one for the result: 29
cycles for a 64-byte TCP/IPv4 frame (26 UDP/IPv4), about 4.3 Mpps at 125 MHz
(1 GbE line rate is 1.49 Mpps). A wider walker is the step for 10 GbE.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
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


class St(enum.Enum, shape=5):
    """Parser states. Bit 4 clear: the state reads a word (`in_rw`, a
    flip-flop written with the state: `consume` is it and the word's
    presence, no state decode)."""
    ETH = 0
    VLAN = 1
    IP0 = 2
    V4 = 3
    V6 = 4
    EXT0 = 5
    EXT1 = 6
    EXTSKIP = 7
    TCP = 8
    UDP = 9
    ESP = 10
    AH = 11
    V4CHK = 16
    V6CHK = 17
    EXTD = 18
    L4D = 19
    SKIP = 20
    OUT = 21


# a next-header value decoded where it is read from the word (timing: EXTD /
# L4D test a flag, no 8-bit compare before the next state)
nh_kind = data.StructLayout({"ext": 1, "frag": 1, "rout": 1, "tcp": 1, "udp": 1, "esp": 1, "ah": 1})


def kind(v):
    return Cat((v == 0) | (v == 43) | (v == 60) | (v == 44), v == 44, v == 43, v == 6, v == 17,
               v == 50, v == 51)


class HeaderParser(wiring.Component):
    """`i`: the packet stream (hw/stream.py); `o`: one result per frame."""

    i: In(packet_signature(64))
    o: Out(stream.Signature(result_layout))

    def elaborate(self, platform):
        m = Module()
        state = Signal(St)
        # copies of state == SKIP / OUT, written with it (timing: the beat
        # movement, i.ready and the result clear test a flip-flop)
        in_skip = Signal()
        in_out = Signal()
        # state bit 4 clear (the state reads a word), likewise a flip-flop
        in_rw = Signal(init=1)
        # likewise for the states that capture the 128-bit addresses and the
        # SPI / sequence number (timing: those enables test one flip-flop,
        # not a 5-bit state decode)
        in_v4 = Signal()
        in_v6 = Signal()
        in_esp = Signal()
        in_ah = Signal()
        in_l4 = Signal()         # TCP or UDP: the ports

        # ---- beat register, read a word at a time from its low end. Timing:
        # the beat shifts down a word as each is consumed, so the word is
        # bdata[0:16] and its byte enables bkeep[0:2] (no word select)
        bdata = Signal(64)
        bkeep = Signal(8)
        bcnt = Signal(4)         # the beat's byte count, taken with it (bkeep shifts)
        # bkeep[1] & ~bkeep[2]: the word is the beat's last, registered as the
        # beat loads or shifts (timing: the beat's load enable below is one
        # LUT5 of flip-flops: bvalid, eof, in_rw, lw, in_skip)
        lw = Signal()
        blast = Signal()
        bvalid = Signal()
        eof = Signal()
        pos = Signal(P)          # byte position of the current word
        flen = Signal(P)
        b0 = bdata[0:8]
        b1 = bdata[8:16]
        word = Cat(b1, b0)       # big-endian value of the two bytes
        # the word's ethertype compares, registered as it moves into bdata[0:16]
        # (timing: ETH's next state tests flip-flops, not 16-bit compares)
        et_tag = Signal()
        et_v4 = Signal()
        et_v6 = Signal()

        def ethertype(d):
            w = Cat(d[8:16], d[0:8])
            return [et_tag.eq((w == 0x8100) | (w == 0x88A8)), et_v4.eq(w == 0x0800),
                    et_v6.eq(w == 0x86DD)]

        wok = Signal()
        trunc_now = Signal()
        consume = Signal()
        take = Signal()
        m.d.comb += [wok.eq(bvalid & ~eof & bkeep[1]),
                     trunc_now.eq(eof | (bvalid & ~bkeep[1])),
                     consume.eq(in_rw & wok),
                     take.eq(in_rw & bvalid & ~eof & lw)]

        # timing: the word's place in its header, one-hot (wx[k]: bytes 2k,
        # 2k+1 of it), so that field selects and header ends are a flip-flop,
        # not a compare of a counter. Word 0 in every state that reads none
        wx = Signal(20, init=1)
        with m.If(~in_rw):
            m.d.sync += wx.eq(1)
        with m.Elif(consume):
            m.d.sync += wx.eq(wx << 1)
        # words left in an IPv4 or extension header, minus 2: negative at its
        # last word (timing: the end is the sign bit, not a compare)
        left = Signal(signed(12))
        with m.If(consume):
            m.d.sync += [pos.eq(pos + 2), left.eq(left - 1)]

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
        nhk = Signal(nh_kind)
        nnh = Signal(8)
        nnhk = Signal(nh_kind)
        src = Signal(128)
        dst = Signal(128)
        end = Signal(P)
        off = Signal(P)
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
        # cleared for each frame: what the result shows, and the walk
        # (the others are written before they are read; src, dst, spi and
        # seq, sport and dport are cleared with their captures, below)
        frame_regs = [etype6, nonip, mal, trunc, unsup, l3, v6, nh, nhk, end, off,
                      is_frag, first, routing, ports_valid, flags, spi_valid,
                      ah_nh, ah_len, eof, pos, flen]

        # timing: end - off, the bytes left after `off`, a register (V4 / V6
        # write it while their header is read, EXT0 subtracts the extension
        # header). It settles two or more cycles before any reader, so its
        # compares with the header sizes are registered from it and the
        # length checks before a next state are flip-flops. Negative: IPv4
        # total < IHL, or the extension header runs past the end
        room = Signal(signed(P + 1))
        room8 = Signal(signed(P + 1))    # room - 8 (sign: room < 8)
        lt12 = Signal()
        lt20 = Signal()
        m.d.sync += [room8.eq(room - 8), lt12.eq(room < 12), lt20.eq(room < 20)]
        lt8 = room8[-1]
        # header checksum, timing: one 16-bit add per word, its carry added
        # back in with the next word (the carry-in trick: one carry chain), the
        # last one in the check. cs + 2^16 cs_c is congruent to the one's
        # complement sum mod 0xFFFF and is (0, 0) only if every word is 0, so
        # the folded sum is 0xFFFF exactly when cs + cs_c == 0xFFFF
        cs_sum = Signal(18)
        m.d.comb += cs_sum.eq(Cat(cs_c, cs) + Cat(cs_c, word))
        cs_ok = Signal()         # timing: checked with each add (V4CHK tests a flip-flop)
        plen0 = Signal()         # IPv6 payload length 0, registered in V6 (likewise)

        # ---- beat movement. A second beat register (`n*`) takes the next
        # beat while the current one is in use, so `i.ready` is one
        # flip-flop (timing: the word-by-word consume logic drives
        # only this block's beat registers, not the input's); a beat moves on
        # every cycle the current one is freed
        skip_take = Signal()
        ndata = Signal(64)
        nkeep = Signal(8)
        nlast = Signal()
        nvalid = Signal()
        m.d.comb += self.i.ready.eq(~nvalid)
        accept = self.i.valid & self.i.ready

        def load(d, k, last):
            m.d.sync += [bdata.eq(d), bkeep.eq(k), bcnt.eq(sum(k[j] for j in range(8))),
                         blast.eq(last), lw.eq(k[1] & ~k[2]), *ethertype(d[0:16])]

        m.d.comb += skip_take.eq(in_skip & ~eof & bvalid)
        # not held in OUT: the frame's last beat has gone (eof), so what
        # loads is the next frame's first, kept by eof until OUT clears it
        with m.If(~bvalid | take | skip_take):
            # loaded even with no beat to take (timing: the input's valid is
            # not in the beat register's enable); bvalid gates every reader
            m.d.sync += [bvalid.eq(nvalid | self.i.valid), nvalid.eq(0)]
            with m.If(nvalid):
                load(ndata, nkeep, nlast)
            with m.Else():
                load(self.i.payload.data, self.i.payload.keep, self.i.payload.last)
        with m.Else():
            with m.If(accept):
                m.d.sync += [ndata.eq(self.i.payload.data), nkeep.eq(self.i.payload.keep),
                             nlast.eq(self.i.payload.last), nvalid.eq(1)]
            with m.If(consume):
                m.d.sync += [bdata.eq(bdata[16:]), bkeep.eq(bkeep[2:]), lw.eq(bkeep[3] & ~bkeep[4]),
                             *ethertype(bdata[16:32])]
        with m.If(take | skip_take):
            m.d.sync += flen.eq(flen + bcnt)
            with m.If(blast):
                m.d.sync += eof.eq(1)

        def go(s):
            m.d.sync += [state.eq(s), in_skip.eq(s == St.SKIP), in_out.eq(s == St.OUT),
                         in_rw.eq(s.value < 16),
                         in_v4.eq(s == St.V4), in_v6.eq(s == St.V6), in_esp.eq(s == St.ESP),
                         in_ah.eq(s == St.AH), in_l4.eq((s == St.TCP) | (s == St.UDP))]

        def bad(flag):
            m.d.sync += flag.eq(1)
            go(St.SKIP)

        def word_state(body):
            with m.If(wok):
                body()
            with m.Elif(trunc_now):
                bad(trunc)

        # the wide fields (src, dst, spi, seq) and the ports (70f03fc's
        # report: the state decode into their enables, -0.99 ns), captured
        # outside the state switch, on each state's flag, not its decode
        # (timing); no two flags are set at once, none with OUT. One If per
        # 16-bit word: OUT's clear first, then the capture, its enable the
        # OR of the states' (flag, position) terms, so yosys gives each word
        # a synchronous reset, a clock enable and the one shared data path
        # (`word`). With the clear in the frame's list and the captures
        # apart (two assignments) each bit took a LUT more: 1206 LUT4
        # against 898
        terms = {}

        def capture_in(flag, reg, at, words):
            """A big-endian field of `words` 16-bit words (into the low ones of
            `reg`), its first word at header position `at` (wx), in the
            state whose flag is `flag`."""
            for k in range(words):
                terms.setdefault((reg.name, k), (reg, []))[1].append(flag & wx[at + words - 1 - k])

        capture_in(in_v4, src, 6, 2)          # IPv4 addresses in the low 32 bits
        capture_in(in_v4, dst, 8, 2)
        capture_in(in_v6, src, 4, 8)
        capture_in(in_v6, dst, 12, 8)
        capture_in(in_esp, spi, 0, 2)
        capture_in(in_esp, seq, 2, 2)
        capture_in(in_ah, spi, 2, 2)
        capture_in(in_ah, seq, 4, 2)
        capture_in(in_l4, sport, 0, 1)
        capture_in(in_l4, dport, 1, 1)
        for (_name, k), (reg, conds) in terms.items():
            with m.If(in_out & self.o.ready):
                m.d.sync += reg.word_select(k, 16).eq(0)
            with m.Elif(wok & Cat(*conds).any()):
                m.d.sync += reg.word_select(k, 16).eq(word)

        with m.Switch(state):
            with m.Case(St.ETH):
                def eth():
                    with m.If(wx[6]):           # the (inner) ethertype
                        with m.If(et_tag):
                            go(St.VLAN)
                        with m.Elif(et_v4):
                            go(St.IP0)
                        with m.Elif(et_v6):
                            m.d.sync += etype6.eq(1)
                            go(St.IP0)
                        with m.Else():
                            bad(nonip)
                word_state(eth)

            with m.Case(St.VLAN):
                def vlan():
                    m.d.sync += wx.eq(1 << 6)   # the next word is an ethertype
                    go(St.ETH)
                word_state(vlan)

            with m.Case(St.IP0):
                m.d.sync += l3.eq(pos)         # the IP header starts here
                def ip0():
                    m.d.sync += wx.eq(1 << 1)
                    with m.If(b0[4:8] == 4):
                        m.d.sync += [ihl.eq(b0[0:4] * 4), cs.eq(word), cs_c.eq(0),
                                     left.eq(b0[0:4] * 2 - 3)]      # 2 IHL - 1 words left
                        with m.If(b0[0:4] < 5):
                            bad(mal)
                        with m.Else():
                            go(St.V4)
                    with m.Elif(b0[4:8] == 6):
                        m.d.sync += v6.eq(1)
                        go(St.V6)
                    with m.Else():
                        bad(mal)
                word_state(ip0)

            with m.Case(St.V4):
                m.d.sync += [room.eq(total - ihl), end.eq(l3 + total)]
                def v4():
                    m.d.sync += [cs.eq(cs_sum[1:17]), cs_c.eq(cs_sum[17]),
                                 cs_ok.eq(Mux(cs_sum[17], cs_sum[1:17] == 0xFFFE,
                                              cs_sum[1:17] == 0xFFFF))]
                    with m.If(wx[1]):
                        m.d.sync += total.eq(word)
                    with m.If(wx[3]):
                        m.d.sync += fragw.eq(word)
                    with m.If(wx[4]):
                        m.d.sync += [nh.eq(b1), nhk.eq(kind(b1))]
                    with m.If(left[-1]):
                        go(St.V4CHK)
                word_state(v4)

            with m.Case(St.V4CHK):
                m.d.sync += [is_frag.eq((fragw[0:13] != 0) | fragw[13]),
                             first.eq(fragw[0:13] == 0)]
                with m.If(room[-1] | ~cs_ok | fragw[15]):     # room < 0: total < IHL
                    bad(mal)
                with m.Else():
                    go(St.L4D)

            with m.Case(St.V6):
                m.d.sync += [room.eq(plen), end.eq(l3 + 40 + plen), plen0.eq(plen == 0)]
                def v6w():
                    with m.If(wx[2]):
                        m.d.sync += plen.eq(word)
                    with m.If(wx[3]):
                        m.d.sync += [nh.eq(b0), nhk.eq(kind(b0))]
                    with m.If(wx[19]):
                        go(St.V6CHK)
                word_state(v6w)

            with m.Case(St.V6CHK):
                with m.If(plen0):
                    bad(unsup)
                with m.Else():
                    go(St.EXTD)

            with m.Case(St.EXTD):
                with m.If(nhk.ext):
                    with m.If(lt8):
                        bad(mal)
                    with m.Else():
                        go(St.EXT0)
                with m.Else():
                    go(St.L4D)

            with m.Case(St.EXT0):
                def ext0():
                    # room - (b1 + 1) * 8 (a fragment header: 8, EXTD checked
                    # it); negative: the header runs past the packet, acted on
                    # in EXTSKIP (timing: the subtract drives no next state)
                    rest = Signal(signed(P + 1))
                    m.d.comb += rest.eq(room8 - Mux(nhk.frag, 0, Cat(Const(0, 3), b1)))
                    m.d.sync += [nnh.eq(b0), nnhk.eq(kind(b0)), room.eq(rest),
                                 ext_over.eq(rest[-1]), routing.eq(routing | nhk.rout),
                                 left.eq(Mux(nhk.frag, 1, Cat(Const(1, 2), b1)))]   # 3, 4 b1 + 3 left
                    with m.If(nhk.frag):
                        go(St.EXT1)
                    with m.Else():
                        go(St.EXTSKIP)
                word_state(ext0)

            with m.Case(St.EXT1):
                def ext1():
                    m.d.sync += [is_frag.eq(1), first.eq(word[3:16] == 0)]
                    go(St.EXTSKIP)
                word_state(ext1)

            with m.Case(St.EXTSKIP):
                with m.If(ext_over):
                    bad(mal)
                with m.Else():
                    def extskip():
                        with m.If(left[-1]):
                            m.d.sync += [nh.eq(nnh), nhk.eq(nnhk)]
                            with m.If(is_frag):
                                go(St.L4D)     # what follows a fragment header is opaque
                            with m.Else():
                                go(St.EXTD)
                    word_state(extskip)

            with m.Case(St.L4D):
                m.d.sync += off.eq(pos)
                with m.If(~first):
                    go(St.SKIP)
                with m.Elif(nhk.tcp):
                    with m.If(lt20):
                        with m.If(is_frag):
                            go(St.SKIP)   # a tiny first fragment: ports stay OPAQUE
                        with m.Else():
                            bad(mal)
                    with m.Else():
                        go(St.TCP)
                with m.Elif(nhk.udp):
                    with m.If(lt8):
                        with m.If(is_frag):
                            go(St.SKIP)
                        with m.Else():
                            bad(mal)
                    with m.Else():
                        go(St.UDP)
                with m.Elif(nhk.esp & ~is_frag & ~lt8):
                    go(St.ESP)
                with m.Elif(nhk.ah & ~is_frag & ~lt12):
                    go(St.AH)
                with m.Else():
                    go(St.SKIP)

            # the upper-layer length checks set `mal` only: SKIP follows
            # either way (timing: the compares drive no next state)
            with m.Case(St.TCP):
                def tcp():
                    with m.If(wx[6]):
                        doff = word[12:16] * 4
                        m.d.sync += [flags.eq(word[0:6]), ports_valid.eq(1)]
                        with m.If((doff < 20) | ((doff > room) & ~is_frag)):
                            m.d.sync += mal.eq(1)
                        go(St.SKIP)
                word_state(tcp)

            with m.Case(St.UDP):
                def udp():
                    with m.If(wx[2]):
                        m.d.sync += ports_valid.eq(1)
                        with m.If(~is_frag & (word != room)):
                            m.d.sync += mal.eq(1)
                        go(St.SKIP)
                word_state(udp)

            with m.Case(St.ESP):
                def esp():
                    with m.If(wx[3]):
                        m.d.sync += spi_valid.eq(1)
                        go(St.SKIP)
                word_state(esp)

            with m.Case(St.AH):
                def ah():
                    with m.If(wx[0]):
                        m.d.sync += [ah_nh.eq(b0), ah_len.eq(b1)]
                    with m.If(wx[5]):
                        m.d.sync += spi_valid.eq(1)
                        go(St.SKIP)
                word_state(ah)

            with m.Case(St.SKIP):
                with m.If(eof):
                    go(St.OUT)
                with m.Elif(bvalid & blast):
                    go(St.OUT)

            with m.Case(St.OUT):
                with m.If(self.o.ready):
                    for r in frame_regs:
                        m.d.sync += r.eq(r.init if isinstance(r, Signal) else 0)
                    go(St.ETH)

        # ---- the result, stable while OUT waits for ready
        m.d.comb += self.o.valid.eq(in_out)
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
