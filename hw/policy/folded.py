"""A table of wide entries stored as `rows` narrower RAM rows per entry.

An ECP5 EBR (DP16KD) is at most 36 bits wide and 512 deep in that shape, so
a 64-entry table of W-bit entries takes ceil(W / 36) EBRs of which only 64
of 512 rows hold data. Storing entry i as rows i*R .. i*R+R-1 of W/R bits
each divides the EBR count by up to R; the price is R reads per entry (a
scan reads the rows on consecutive cycles) and R write cycles per entry.

    t = FoldedTable(m, platform, layout, depth, rows, w_en, w_index, w_data)
    t.rp.addr   row address: Cat(row, entry index)
    whole, entry = t.assemble(m, didx)   # didx: the row address on t.rp.data;
                                         # entry: the whole entry a cycle later

With `rows` > 1 a write's rows are written from registers, row 0 in the
cycle after `w_en` and one further row per cycle; `w_busy` is high from the
cycle after `w_en` until the last row is written (`rows` cycles). With one
row the entry is written in the cycle of `w_en`. The owner starts no lookup
while `w_busy` and sends no second `w_en` before it drops.

Every row read is registered as it leaves the RAM (`word`, hw/ram.py: on
ECP5 the EBR's own output register). The owner starts no lookup during a
write, so it never uses a row read in a cycle that writes it (the promise
`no_rw_check` needs).
"""

from amaranth.hdl import Cat, Const, Signal
from amaranth.lib import data

from ..ram import block_ram, read_register


class FoldedTable:
    def __init__(self, m, platform, layout, depth, rows, w_en, w_index, w_data, name="mem"):
        assert rows >= 1 and rows & (rows - 1) == 0
        self.layout, self.rows = layout, rows
        self.rb = rb = (rows - 1).bit_length()
        self.part = part = -(-layout.size // rows)
        m.submodules[name] = self.mem = mem = block_ram(part, depth * rows)
        self.wp, self.rp = wp, rp = mem.write_port(), mem.read_port()
        self.word = read_register(m, platform, wp, rp, name=f"{name}_word")
        self.w_busy = Signal()
        wbits = Signal(part * rows)
        m.d.comb += wbits.eq(w_data.as_value())
        ab = len(w_index)
        if rows == 1:
            m.d.comb += [wp.addr.eq(w_index), wp.data.eq(wbits), wp.en.eq(w_en)]
            return
        # the write port's address, data and enable are registers (timing:
        # d9f828d's 25F report, the owner's w_en through the row address
        # mux to the EBR's address pins, 5 ns of routing, -0.45; and the
        # entry's data, 0 for a clear, into its data pins)
        q_en, q_addr, q_data = Signal(), Signal(rb + ab), Signal(part)
        m.d.comb += [wp.addr.eq(q_addr), wp.data.eq(q_data), wp.en.eq(q_en)]
        m.d.sync += q_en.eq(0)
        rest = Signal(part * (rows - 1))    # rows still to write, row 1 first
        row = Signal(rb + 1)                # the row queued next; `rows`: the last is being written
        base = Signal(ab)
        with m.If(w_en):
            m.d.sync += [q_addr.eq(Cat(Const(0, rb), w_index)), q_data.eq(wbits[:part]), q_en.eq(1),
                         rest.eq(wbits[part:]), row.eq(1), base.eq(w_index), self.w_busy.eq(1)]
        with m.Elif(self.w_busy):
            with m.If(row == rows):
                m.d.sync += self.w_busy.eq(0)
            with m.Else():
                m.d.sync += [q_addr.eq(Cat(row[:rb], base)), q_data.eq(rest[:part]), q_en.eq(1),
                             rest.eq(rest >> part), row.eq(row + 1)]

    def assemble(self, m, didx):
        """(whole, entry): `whole` when rp.data holds an entry's last row; in
        the cycle after, `entry` (a view of `layout`) is that whole entry
        (assemble_rows)."""
        last = Const(1, 1) if self.rows == 1 else didx[:self.rb] == self.rows - 1
        return last, assemble_rows(m, self.word, last, self.rows, self.layout)


def assemble_rows(m, word, last, rows, layout):
    """An entry stored as `rows` RAM rows, read on consecutive cycles: `word`
    is the read word registered out of the RAM (hw/ram.py), `last` says the
    row on the read port (a cycle ahead of `word`) is an entry's last. The
    view returned is the whole entry in the cycle `word` holds its last row:
    that row, and the earlier ones shifted into `parts` on the cycles before."""
    if rows == 1:
        return data.View(layout, word)
    part = len(word)
    parts = Signal(part * (rows - 1))
    last_q = Signal()                   # `word` holds an entry's last row
    m.d.sync += last_q.eq(last)
    with m.If(~last_q):
        m.d.sync += parts.eq(Cat(parts[part:], word))
    return data.View(layout, Cat(parts, word)[:layout.size])
