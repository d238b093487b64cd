"""DiffPosition: counting a hunk's lines lands where reading them one by one does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from credd.scan import DiffPosition

content = st.sampled_from([b"x", b"++ b/not-a-header", b"-- a/nor-this", b"@@ in content",
                           b"diff in content", b"commit in content", b""])


@st.composite
def diff_output(draw) -> bytes:
    """`git log -p -U0` output: commits with messages, files, hunks counted by their headers."""
    out = []
    for c in range(draw(st.integers(1, 3))):
        out.append(b"commit %040x" % c)
        out += [b"    " + line for line in draw(st.lists(content, max_size=3))] + [b""]
        for f in range(draw(st.integers(0, 3))):
            out += [b"diff --git a/f%d b/f%d" % (f, f), b"index 1..2 100644",
                    b"--- a/f%d" % f, b"+++ b/f%d" % f]
            line = 1
            for _ in range(draw(st.integers(0, 3))):
                removed, added = draw(st.integers(0, 3)), draw(st.integers(0, 4))
                if not (removed or added):
                    continue
                line += draw(st.integers(0, 5))
                out.append(b"@@ -%d,%d +%d,%d @@ ctx" % (line, removed, line, added))
                out += [b"-" + draw(content) for _ in range(removed)]
                out += [b"+" + draw(content) for _ in range(added)]
                if draw(st.booleans()):
                    out.append(b"\\ No newline at end of file")
                line += added
    return b"\n".join(out) + b"\n"


def state(p: DiffPosition) -> tuple:
    return p.commit, p.path, p.new_line, p.removed, p.added, p.in_message


def read_lines(buf: bytes, to: int) -> tuple[DiffPosition, list]:
    """The reference: every line stepped, one at a time."""
    p, wheres, pos = DiffPosition(), [], 0
    while pos < to:
        end = buf.index(b"\n", pos)
        wheres.append((pos, end, p.step(buf[pos:end])))
        pos = end + 1
    return p, wheres


@settings(max_examples=400, deadline=None)
@given(buf=diff_output(), data=st.data())
def test_skip_and_advance_agree_with_reading_every_line(buf, data):
    starts = [0] + [i + 1 for i, b in enumerate(buf) if b == 10]
    cut = data.draw(st.sampled_from(starts))
    reference, wheres = read_lines(buf, len(buf))
    counted = DiffPosition()
    counted.skip(buf, 0, cut)
    assert state(counted) == state(read_lines(buf, cut)[0])
    counted.skip(buf, cut, len(buf))
    assert state(counted) == state(reference)
    # advance to any offset: the line holding it, reported as reading gives it
    at = data.draw(st.integers(0, len(buf) - 1))
    line_start, line_end, where = next(w for w in wheres if w[0] <= at <= w[1])
    advanced = DiffPosition()
    advanced.skip(buf, 0, cut if cut <= line_start else 0)
    assert advanced.advance(buf, cut if cut <= line_start else 0, at) == (line_end + 1, where)


def test_a_hunk_running_across_pieces_keeps_its_line_numbers():
    """A commit longer than PIECE_MAX is cut between lines: the next piece goes on counting."""
    body = b"".join(b"+added line %d\n" % i for i in range(200_000))
    buf = (b"commit " + b"a" * 40 + b"\n    m\n\ndiff --git a/x b/x\n--- /dev/null\n+++ b/x\n"
           b"@@ -0,0 +1,200000 @@\n" + body)
    cut = buf.index(b"+added line 123456\n")
    p = DiffPosition()
    p.skip(buf[:cut], 0, cut)
    assert (p.path, p.new_line, p.added) == ("x", 123_457, 200_000 - 123_456)
    rest = buf[cut:]
    assert p.advance(rest, 0, rest.index(b"line 150000"))[1] == ("x", 150_001)
