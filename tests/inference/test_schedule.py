"""The output timeline: counts, exact times for any rate ratio, cuts, holds and dedup."""
from __future__ import annotations

import random
from fractions import Fraction

import pytest

from animvfi_pipeline.inference.schedule import (
    CUT,
    HOLD,
    INTERPOLATED,
    SOURCE,
    output_count,
    parse_rate,
    plan_frames,
    usual_step,
)


def shown_time(frame, fps_in):
    """Seconds of source time an output frame shows (for an in-between of neighbours)."""
    return (frame.src0 + Fraction(frame.t).limit_denominator(10**6)) / fps_in


def test_factor_two_inserts_one_frame_per_pair_and_holds_the_last_frame():
    plan = plan_frames(5, Fraction(24), Fraction(48))
    assert len(plan) == 10  # same duration as the 5 input frames
    assert [(f.src0, f.kind) for f in plan[0::2]] == [(i, SOURCE) for i in range(5)]
    assert [(f.src0, f.src1, f.t) for f in plan[1:-1:2]] == [(i, i + 1, 0.5) for i in range(4)]
    assert (plan[-1].src0, plan[-1].kind) == (4, HOLD)  # nothing after the last frame to move towards


def test_factor_four_uses_quarter_steps():
    plan = plan_frames(3, Fraction(12), Fraction(48))
    assert [f.t for f in plan[:4]] == [0.0, 0.25, 0.5, 0.75]
    assert all(f.src1 == f.src0 + 1 for f in plan[:8] if f.kind == INTERPOLATED)


@pytest.mark.parametrize(
    "fps_in, fps_out, n_src",
    [(24, 60, 24), (30, 24, 30), (25, 50, 25), ("24000/1001", "60000/1001", 48), (24, "59.94", 100), (60, 24, 7)],
)
def test_any_rate_ratio_keeps_duration_and_shows_the_right_source_time(fps_in, fps_out, n_src):
    fps_in, fps_out = parse_rate(fps_in), parse_rate(fps_out)
    plan = plan_frames(n_src, fps_in, fps_out)
    duration = Fraction(n_src) / fps_in
    assert len(plan) == output_count(n_src, fps_in, fps_out)
    # Every output frame's slot starts inside the input, and the next one would not.
    assert (len(plan) - 1) / fps_out < duration <= len(plan) / fps_out
    for j, f in enumerate(plan):
        assert f.position == j * fps_in / fps_out  # exact: no drift however long the clip
        if f.kind == INTERPOLATED:
            assert f.src1 == f.src0 + 1 and 0 < f.t < 1
            assert shown_time(f, fps_in) == pytest.approx(float(Fraction(j) / fps_out), abs=1e-9)
        elif f.kind == SOURCE:
            assert Fraction(f.src0) / fps_in == Fraction(j) / fps_out


def test_24_to_60_cycles_through_fifths():
    plan = plan_frames(24, Fraction(24), Fraction(60))
    assert len(plan) == 60
    assert [round(f.t, 6) for f in plan[:5]] == [0.0, 0.4, 0.8, 0.2, 0.6]
    assert [f.src0 for f in plan[:6]] == [0, 0, 0, 1, 1, 2]


def test_30_to_24_drops_to_four_fifths_of_the_frames():
    plan = plan_frames(30, Fraction(30), Fraction(24))
    assert len(plan) == 24
    assert [(f.src0, f.t) for f in plan[:5]] == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75), (5, 0.0)]


def test_long_ntsc_clip_does_not_drift():
    plan = plan_frames(24_000, parse_rate("24000/1001"), parse_rate("60000/1001"))
    assert {round(f.t, 9) for f in plan} == {0.0, 0.2, 0.4, 0.6, 0.8}
    assert plan[-5].kind == SOURCE and plan[-5].src0 == 23_998


@pytest.mark.parametrize("text, expected", [("60", Fraction(60)), ("59.94", Fraction(2997, 50)),
                                            ("60000/1001", Fraction(60000, 1001)), (23.976, Fraction(2997, 125))])
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("bad", ["0", "-24", "fast", "1/0", ""])
def test_parse_rate_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        parse_rate(bad)


def test_frames_at_a_cut_copy_the_nearest_source_frame():
    plan = plan_frames(6, Fraction(10), Fraction(40), cuts=[3])
    around = [f for f in plan if 2 < f.position < 3]
    assert [(f.src0, f.kind) for f in around] == [(2, CUT), (3, CUT), (3, CUT)]
    assert not any(f.src0 < 3 <= f.src1 for f in plan if f.kind == INTERPOLATED)
    assert any(f.kind == INTERPOLATED for f in plan if 3 < f.position < 4)  # the new shot still moves


def test_without_dedup_a_repeated_frame_is_copied_not_interpolated():
    plan = plan_frames(4, Fraction(12), Fraction(24), duplicates=[2])
    assert (plan[3].src0, plan[3].kind) == (1, HOLD)  # between frame 1 and its repeat
    assert plan[5].kind == INTERPOLATED  # between the repeat and frame 3


def test_dedup_on_twos_moves_evenly_between_drawings():
    # Drawings A A B B C C D D: each held two frames.
    plan = plan_frames(8, Fraction(12), Fraction(24), duplicates=[1, 3, 5, 7], dedup=True)
    assert len(plan) == 16
    steps = [(f.src0, f.src1, f.t) for f in plan[:13]]
    expected = []
    for j in range(13):
        p = Fraction(j, 2)
        a = int(p // 2) * 2
        t = (p - a) / 2
        expected.append((a, a, 0.0) if t == 0 else (a, a + 2, float(t)))
    assert steps == expected
    assert all(f.kind == HOLD and f.src0 == 6 for f in plan[13:])  # the last drawing: nothing after it


def test_dedup_keeps_long_holds_still_and_moves_at_the_clip_step():
    # On twos (A A B B C C), then C held for 8 frames, then D D.
    dups = [1, 3, 5, 6, 7, 8, 9, 10, 11, 13]
    plan = plan_frames(14, Fraction(12), Fraction(12), duplicates=dups, dedup=True, max_hold=3)
    src = {f.position: f for f in plan}
    assert all(src[p].src0 == 4 and src[p].is_copy for p in range(4, 11))  # a pause stays a pause
    assert (src[11].src0, src[11].src1, src[11].t) == (4, 12, 0.5)  # the move takes two frames, like the rest
    assert src[12].kind == SOURCE


def test_dedup_does_not_reach_across_a_cut():
    # A A B B | C C D D, cut before frame 4.
    plan = plan_frames(8, Fraction(12), Fraction(24), cuts=[4], duplicates=[1, 3, 5, 7], dedup=True)
    for f in plan:
        if f.kind == INTERPOLATED:
            assert (f.src0 < 4) == (f.src1 < 4)
    in_gap = [f for f in plan if 2 < f.position < 4]
    assert all(f.is_copy for f in in_gap)


def test_usual_step_picks_the_most_common_regular_gap():
    assert usual_step([0, 2, 4, 6, 7], cuts=[], max_hold=3) == 2
    assert usual_step([0, 10, 20], cuts=[], max_hold=3) == 1  # no regular gaps: on ones
    assert usual_step([0, 1, 3, 5, 6], cuts=[], max_hold=3) == 1  # tie goes to the smaller step


@pytest.mark.parametrize("seed", range(20))
def test_random_plans_are_well_formed(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 40)
    cuts = sorted(rng.sample(range(1, n), k=min(n - 1, rng.randint(0, 3))))
    dups = sorted(rng.sample(range(1, n), k=rng.randint(0, n - 1)))
    fps_in, fps_out = Fraction(rng.choice([12, 24, 25, 30])), Fraction(rng.choice([24, 48, 50, 60, 120]))
    plan = plan_frames(n, fps_in, fps_out, cuts=cuts, duplicates=dups, dedup=rng.random() < 0.5)
    assert len(plan) == output_count(n, fps_in, fps_out)
    for prev, cur in zip(plan, plan[1:]):
        assert cur.src0 >= prev.src0  # lets the renderer stream with a tiny window
    for f in plan:
        assert 0 <= f.src0 <= f.src1 < n and 0 <= f.t < 1
        assert f.is_copy == (f.kind != INTERPOLATED)
        if f.kind == INTERPOLATED:
            assert not any(f.src0 < c <= f.src1 for c in cuts)
