"""modeling_ast.training.sed_metrics: PSDS (sed_scores_eval) and event/segment F1 (sed_eval) on hand-made cases whose
values are worked out by hand in the comments, and the DCASE TSV reader/writer."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from modeling_ast.training.sed_metrics import event_f1, psds, read_strong_tsv, write_events_tsv

LABELS = ["a", "b"]


def frames(num_frames: int, seconds: float) -> np.ndarray:
    """(num_frames + 1,) boundaries of frames of `seconds` each from 0."""
    return np.arange(num_frames + 1) * seconds


def scores_with(spans: dict[tuple[int, int, int], float], num_frames: int, num_labels: int = 2) -> np.ndarray:
    """(num_frames, num_labels) zeros, with score value on frames [start, stop) of class column k for every
    (start, stop, k) -> value of `spans`."""
    scores = np.zeros((num_frames, num_labels))
    for (start, stop, column), value in spans.items():
        scores[start:stop, column] = value
    return scores


# ---- PSDS: 100 frames of 0.1 s (10 s clips) unless stated ----


def test_perfect_scores_give_psds_one():
    # Score 1 exactly on both events, 0 elsewhere: at every threshold in (0, 1] each event is found (TPR 1) with no
    # false alarm (eFPR 0), on the clip with events and on the clip without: the curve is 1 from eFPR 0 to 100.
    ground_truth = {"c1": [(2.0, 4.0, "a"), (5.0, 7.0, "b")], "c2": []}
    frame_scores = {
        "c1": (frames(100, 0.1), scores_with({(20, 40, 0): 1.0, (50, 70, 1): 1.0}, 100)),
        "c2": (frames(100, 0.1), np.zeros((100, 2))),
    }
    result = psds(frame_scores, ground_truth, {"c1": 10.0, "c2": 10.0}, LABELS)
    assert result == pytest.approx({"psds1": 1.0, "psds2": 1.0})


def test_psds_subtracts_the_spread_of_the_classes():
    # Class a found perfectly (TPR 1), class b scored 0 everywhere: mean 0.5 minus alpha_st (1) times the standard
    # deviation 0.5 = 0 at every eFPR, in both scenarios (alpha_st 0 would give 0.5). b is not found even at
    # threshold 0, where every frame counts as detected: that whole-clip detection is a false alarm on the clip
    # without events (1 in 20 s = 180 per hour, past max eFPR 100).
    ground_truth = {"c1": [(2.0, 4.0, "a"), (5.0, 7.0, "b")], "c2": []}
    frame_scores = {
        "c1": (frames(100, 0.1), scores_with({(20, 40, 0): 1.0}, 100)),
        "c2": (frames(100, 0.1), np.zeros((100, 2))),
    }
    result = psds(frame_scores, ground_truth, {"c1": 10.0, "c2": 10.0}, LABELS)
    assert result == pytest.approx({"psds1": 0.0, "psds2": 0.0})


def test_half_covered_event_passes_psds2_tolerances_but_not_psds1():
    # One class; score 1 on [2, 3) of the event [2, 4): the detection lies wholly inside the event (DTC 1) but covers
    # half of it: below PSDS1's GTC 0.7, so the event is never found -> 0; above PSDS2's GTC 0.1, found with no false
    # alarm -> TPR 1 from eFPR 0 -> 1. (One class has no cross-triggers: PSDS2 is computed without them.)
    frame_scores = {"c": (frames(100, 0.1), scores_with({(20, 30, 0): 1.0}, 100, num_labels=1))}
    result = psds(frame_scores, {"c": [(2.0, 4.0, "a")]}, {"c": 10.0}, ["a"])
    assert result == pytest.approx({"psds1": 0.0, "psds2": 1.0})


def test_false_alarm_rate_is_per_hour_of_audio():
    # 72 s clip, 1 s frames. A false alarm on [10, 12) scores 0.9, above the true event [2, 4) at 0.8. One false
    # alarm in 72 s is 50 per hour, so the event is found (TPR 1) only from eFPR 50: area 50 x 1 of 100 -> 0.5.
    frame_scores = {"c": (frames(72, 1.0), scores_with({(2, 4, 0): 0.8, (10, 12, 0): 0.9}, 72, num_labels=1))}
    result = psds(frame_scores, {"c": [(2.0, 4.0, "a")]}, {"c": 72.0}, ["a"])
    assert result == pytest.approx({"psds1": 0.5, "psds2": 0.5})


def test_psds2_penalises_cross_triggers():
    # One 144 s clip, 1 s frames. Class a scores 0.9 on [100, 102), inside class b's 72 s event [70, 142), and 0.8 on
    # its own event [2, 4); b is perfect (TPR 1 throughout). a finds its event only with the false alarm, one in
    # 144 s = 25 per hour. With alpha_st 1, mean - std = 0.5 - 0.5 = 0 until a's eFPR, 1 after:
    # PSDS1 (no cross-trigger term): eFPR 25 -> 75 of 100 -> 0.75.
    # PSDS2: the false alarm lies on b's event (CTTC 0.3), 1 cross-trigger per 72 s of b events = 50 per hour,
    #   eFPR = 25 + alpha_ct 0.5 x 50 = 50 -> 0.5.
    scores = scores_with({(2, 4, 0): 0.8, (100, 102, 0): 0.9, (70, 142, 1): 1.0}, 144)
    ground_truth = {"c": [(2.0, 4.0, "a"), (70.0, 142.0, "b")]}
    result = psds({"c": (frames(144, 1.0), scores)}, ground_truth, {"c": 144.0}, LABELS)
    assert result == pytest.approx({"psds1": 0.75, "psds2": 0.5})


def test_a_class_without_reference_events_is_left_out_of_psds():
    # The cross-trigger case above plus a class c without reference events that scores 1 everywhere: c has no
    # true-positive rate (sed_scores_eval refuses it), so PSDS is a's and b's, as above; with no reference event at
    # all there is no PSDS.
    scores = scores_with({(2, 4, 0): 0.8, (100, 102, 0): 0.9, (70, 142, 1): 1.0, (0, 144, 2): 1.0}, 144, 3)
    ground_truth = {"c": [(2.0, 4.0, "a"), (70.0, 142.0, "b")]}
    result = psds({"c": (frames(144, 1.0), scores)}, ground_truth, {"c": 144.0}, ["a", "b", "c"])
    assert result == pytest.approx({"psds1": 0.75, "psds2": 0.5})
    nothing = psds({"c": (frames(144, 1.0), scores)}, {"c": []}, {"c": 144.0}, ["a", "b", "c"])
    assert np.isnan(nothing["psds1"]) and np.isnan(nothing["psds2"])


def test_psds_checks_its_inputs():
    ground_truth = {"c1": [(2.0, 4.0, "a")], "c2": []}
    good = (frames(100, 0.1), np.zeros((100, 2)))
    durations = {"c1": 10.0, "c2": 10.0}
    with pytest.raises(ValueError, match="frame_scores has no entry for 1 clip.*'c2'"):
        psds({"c1": good}, ground_truth, durations, LABELS)
    with pytest.raises(ValueError, match="ground truth lacks.*'c3'"):
        psds({"c1": good, "c2": good, "c3": good}, ground_truth, durations, LABELS)
    with pytest.raises(ValueError, match="durations has no entry.*'c2'"):
        psds({"c1": good, "c2": good}, ground_truth, {"c1": 10.0}, LABELS)
    with pytest.raises(ValueError, match=r"clip 'c2': expected scores \(n, 2\)"):
        psds({"c1": good, "c2": (frames(100, 0.1), np.zeros((100, 3)))}, ground_truth, durations, LABELS)
    with pytest.raises(ValueError, match="clip 'c2': frame boundaries must be strictly ascending"):
        psds({"c1": good, "c2": (np.zeros(101), np.zeros((100, 2)))}, ground_truth, durations, LABELS)
    with pytest.raises(ValueError, match="clip 'c1' has an event labelled 'x'"):
        psds({"c1": good, "c2": good}, {"c1": [(2.0, 4.0, "x")], "c2": []}, durations, LABELS)


# ---- event-based F1 (collars) and segment-based F1 (1 s segments) ----

TRUTH = {"c1": [(1.0, 3.0, "a"), (5.0, 6.0, "b")], "c2": []}


def test_exact_events_score_one():
    assert event_f1(TRUTH, TRUTH, LABELS) == pytest.approx(
        {"event_f1": 1.0, "event_f1_micro": 1.0, "segment_f1": 1.0, "segment_f1_micro": 1.0}
    )


@pytest.mark.parametrize(("shift", "expected_event_f1"), [(0.15, 1.0), (0.25, 0.0)])
def test_onset_collar_is_200_ms(shift, expected_event_f1):
    # Both events moved by `shift`: within the 200 ms collar every event matches, past it none does.
    # Segments (the same for both shifts): a [1, 3) -> segments 1, 2; moved, 1, 2, 3: TP 2, FP 1 -> F1 4/5;
    # b [5, 6) -> segment 5; moved, 5, 6: TP 1, FP 1 -> F1 2/3. Macro (4/5 + 2/3) / 2 = 11/15; micro TP 3, FP 2,
    # FN 0 -> 6/8.
    predicted = {"c1": [(onset + shift, offset + shift, label) for onset, offset, label in TRUTH["c1"]]}
    result = event_f1(predicted, TRUTH, LABELS)
    assert result["event_f1"] == pytest.approx(expected_event_f1)
    assert result["event_f1_micro"] == pytest.approx(expected_event_f1)
    assert result["segment_f1"] == pytest.approx(11 / 15)
    assert result["segment_f1_micro"] == pytest.approx(6 / 8)


@pytest.mark.parametrize(("late", "expected_event_f1"), [(0.35, 1.0), (0.45, 0.5)])
def test_offset_collar_is_the_larger_of_200_ms_and_20_percent(late, expected_event_f1):
    # The 2 s event of a ends `late` s late: its offset collar is max(0.2, 0.2 x 2) = 0.4 s. Within it both events
    # match (F1 1); past it a scores F1 0 and b 1 -> macro 0.5.
    predicted = {"c1": [(1.0, 3.0 + late, "a"), (5.0, 6.0, "b")]}
    assert event_f1(predicted, TRUTH, LABELS)["event_f1"] == pytest.approx(expected_event_f1)


def test_a_class_never_output_scores_zero_in_the_macro_average():
    # Only a is output. Events: a F1 1, b F1 0 -> macro 0.5; micro TP 1, FN 1 -> P 1, R 1/2 -> 2/3.
    # Segments: a (2 segments) F1 1, b F1 0 -> macro 0.5 (sed_eval would give b no F1 and the macro 1.0 without
    # zero_score); micro TP 2, FN 1 -> P 1, R 2/3 -> 0.8.
    result = event_f1({"c1": [(1.0, 3.0, "a")]}, TRUTH, LABELS)
    expected = {"event_f1": 0.5, "event_f1_micro": 2 / 3, "segment_f1": 0.5, "segment_f1_micro": 0.8}
    assert result == pytest.approx(expected)


def test_false_alarm_on_a_clip_without_events_counts():
    # c1 exact; a false "a" on [1, 2) of c2: events a TP 1, FP 1 -> P 1/2, R 1 -> 2/3, b 1 -> macro 5/6;
    # micro TP 2, FP 1 -> 4/5. Segments: a TP 2, FP 1 -> 4/5, b 1 -> macro 9/10; micro TP 3, FP 1 -> 6/7.
    predicted = {"c1": TRUTH["c1"], "c2": [(1.0, 2.0, "a")]}
    result = event_f1(predicted, TRUTH, LABELS)
    assert result == pytest.approx(
        {"event_f1": 5 / 6, "event_f1_micro": 4 / 5, "segment_f1": 9 / 10, "segment_f1_micro": 6 / 7}
    )


def test_a_class_without_reference_events_is_left_out_of_the_macro_average():
    # Only a has reference events; a false b on [5, 6). b has no recall, so no F1, and sed_eval's macro average is
    # a's F1 alone, 1; the micro F1 counts the false alarm: TP 1, FP 1 -> P 1/2, R 1 -> 2/3 (segments: TP 2, FP 1 ->
    # 4/5).
    predicted = {"c": [(1.0, 3.0, "a"), (5.0, 6.0, "b")]}
    result = event_f1(predicted, {"c": [(1.0, 3.0, "a")]}, LABELS)
    expected = {"event_f1": 1.0, "event_f1_micro": 2 / 3, "segment_f1": 1.0, "segment_f1_micro": 4 / 5}
    assert result == pytest.approx(expected)


def test_clips_without_predictions_count_as_none_and_unknown_ones_are_errors():
    # Nothing predicted: every reference event is missed, every F1 0.
    keys = ["event_f1", "event_f1_micro", "segment_f1", "segment_f1_micro"]
    assert event_f1({}, TRUTH, LABELS) == pytest.approx(dict.fromkeys(keys, 0.0))
    with pytest.raises(ValueError, match="predicted has 1 clip.*ground truth lacks.*'c9'"):
        event_f1({"c9": []}, TRUTH, LABELS)
    with pytest.raises(ValueError, match="predicted: clip 'c1' has an event labelled 'z'"):
        event_f1({"c1": [(1.0, 2.0, "z")]}, TRUTH, LABELS)


def test_without_the_libraries_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sed_eval.sound_event", None)  # what a missing package looks like to import
    with pytest.raises(ImportError, match=r"pip install 'modeling_ast\[sed\]'"):
        event_f1(TRUTH, TRUTH, LABELS)


# ---- DCASE TSV ----


def test_events_tsv_round_trips(tmp_path):
    events = {
        "clip_b.wav": [(5.25, 6.5, "b"), (0.001, 1.999, "a")],
        "clip_a.wav": [],
        "clip_c.wav": [(0.0, 10.0, "a")],
    }
    path = tmp_path / "strong.tsv"
    write_events_tsv(events, path)
    # Clips keep their order, events are sorted by onset, a clip without events is a filename-only row.
    assert path.read_text() == (
        "filename\tonset\toffset\tevent_label\n"
        "clip_b.wav\t0.001\t1.999\ta\n"
        "clip_b.wav\t5.250\t6.500\tb\n"
        "clip_a.wav\t\t\t\n"
        "clip_c.wav\t0.000\t10.000\ta\n"
    )
    assert read_strong_tsv(path) == {
        "clip_b.wav": [(0.001, 1.999, "a"), (5.25, 6.5, "b")],
        "clip_a.wav": [],
        "clip_c.wav": [(0.0, 10.0, "a")],
    }
    assert [entry.name for entry in tmp_path.iterdir()] == ["strong.tsv"]  # no partial file left behind


def test_events_tsv_replaces_an_existing_file_and_refuses_unwritable_names(tmp_path):
    path = tmp_path / "strong.tsv"
    write_events_tsv({"old.wav": []}, path)
    write_events_tsv({"new.wav": [(1.0, 2.0, "a")]}, path)
    assert read_strong_tsv(path) == {"new.wav": [(1.0, 2.0, "a")]}
    with pytest.raises(ValueError, match="contains a tab"):
        write_events_tsv({"a\tb.wav": []}, path)
    assert read_strong_tsv(path) == {"new.wav": [(1.0, 2.0, "a")]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("x.wav\t1.0\t2.0", "expected 4 tab-separated fields, got 3"),
        ("x.wav\tone\t2.0\ta", "onset and offset must be numbers"),
        ("x.wav\t2.0\t2.0\ta", "need 0 <= onset < offset"),
        ("x.wav\t-0.5\t2.0\ta", "need 0 <= onset < offset"),
        ("x.wav\t1.0\t2.0\t", "empty event_label"),
        ("\t1.0\t2.0\ta", "empty filename"),
    ],
)
def test_bad_rows_are_errors_naming_file_and_line(tmp_path, row, message):
    path = tmp_path / "strong.tsv"
    path.write_text(f"filename\tonset\toffset\tevent_label\ngood.wav\t0.5\t1.0\ta\n{row}\n")
    with pytest.raises(ValueError, match=f"strong.tsv, line 3: {message}"):
        read_strong_tsv(path)


def test_a_file_without_the_header_is_an_error(tmp_path):
    path = tmp_path / "strong.tsv"
    path.write_text("x.wav\t0.5\t1.0\ta\n")
    with pytest.raises(ValueError, match="strong.tsv: the first line must be the header"):
        read_strong_tsv(path)
