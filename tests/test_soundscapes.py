"""examples/soundscapes.py on the FSDD recordings the repository ships: determinism, the speaker split, the DCASE files
(read back by sed_scores_eval's own readers too), and that each labelled event's audio is where its label says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import import_example
import soundfile

from modeling_ast.training.sed_metrics import read_strong_tsv

EVAL_SPEAKERS = ("theo", "yweweler")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RATE = 16000
FRAME = 160  # 10 ms


@pytest.fixture(scope="module")
def soundscapes():
    """examples/soundscapes.py, imported as the script runs (examples/ on sys.path for its sibling module)."""
    return import_example("soundscapes")


@pytest.fixture(scope="module")
def written(soundscapes, fsdd_dir, tmp_path_factory):
    """(output folder, split -> folder) of 6 training, 4 evaluation and 3 validation soundscapes, seed 3."""
    output = tmp_path_factory.mktemp("soundscapes")
    return output, soundscapes.make_soundscapes(fsdd_dir, output, num_train=6, num_eval=4, seed=3, num_validation=3)


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_the_same_seed_writes_identical_files_and_more_extend_a_set(soundscapes, written, fsdd_dir, tmp_path):
    output, _ = written
    soundscapes.main(
        ["--fsdd_dir", str(fsdd_dir), "--output_dir", str(tmp_path / "again"), "--num_train", "6", "--num_eval", "4",
         "--num_validation", "3", "--seed", "3"]
    )  # fmt: skip
    assert file_bytes(tmp_path / "again") == file_bytes(output)

    soundscapes.make_soundscapes(fsdd_dir, tmp_path / "fewer", num_train=3, num_eval=4, seed=3)
    fewer = file_bytes(tmp_path / "fewer")
    assert fewer["train/audio/train_00002.wav"] == file_bytes(output)["train/audio/train_00002.wav"]
    assert "train/audio/train_00003.wav" not in fewer
    assert not (tmp_path / "fewer" / "validation").exists()  # no validation soundscapes asked for: no folder
    assert {name for name in fewer if name.startswith("eval/")} <= file_bytes(output).keys()
    assert all(fewer[name] == file_bytes(output)[name] for name in fewer if name.startswith("eval/audio"))

    soundscapes.make_soundscapes(fsdd_dir, tmp_path / "other_seed", num_train=6, num_eval=4, seed=4, num_validation=3)
    other = file_bytes(tmp_path / "other_seed")
    assert other.keys() == file_bytes(output).keys()
    assert all(other[name] != data for name, data in file_bytes(output).items() if name.endswith(".wav"))


def test_eval_speakers_never_appear_in_training(soundscapes, fsdd_dir):
    pools = soundscapes.split_recordings(fsdd_dir, EVAL_SPEAKERS)
    speakers = {
        split: {path.name.split("_")[1] for paths in pool.values() for path in paths} for split, pool in pools.items()
    }
    assert speakers["eval"] == set(EVAL_SPEAKERS)
    assert speakers["train"] == {"george", "jackson", "lucas", "nicolas"}
    for pool in pools.values():
        assert all(path.name.startswith(f"{digit}_") for digit, paths in pool.items() for path in paths)
    everything = sorted(path for pool in pools.values() for paths in pool.values() for path in paths)
    assert everything == sorted(fsdd_dir.glob("*.wav"))

    with pytest.raises(ValueError, match=r"no recordings of eval speaker\(s\) \['nobody'\]"):
        soundscapes.split_recordings(fsdd_dir, ("theo", "nobody"))
    with pytest.raises(ValueError, match="none left for training"):
        soundscapes.split_recordings(fsdd_dir, ("george", "jackson", "lucas", "nicolas", "theo", "yweweler"))


def test_eval_takes_hold_out_takes_0_to_4_of_every_speaker(soundscapes, fsdd_dir, tmp_path):
    pools = soundscapes.split_recordings(fsdd_dir, None)
    takes = {split: {int(path.stem.split("_")[2]) for paths in pool.values() for path in paths}
             for split, pool in pools.items()}  # fmt: skip
    assert takes["eval"] <= {0, 1, 2, 3, 4} and takes["eval"]
    assert min(takes["train"]) == 5
    speakers = {path.name.split("_")[1] for path in fsdd_dir.glob("*.wav")}
    eval_speakers = {path.name.split("_")[1] for paths in pools["eval"].values() for path in paths}
    assert eval_speakers == speakers  # every speaker is heard in training and evaluated on other takes
    everything = sorted(path for pool in pools.values() for paths in pool.values() for path in paths)
    assert everything == sorted(fsdd_dir.glob("*.wav"))

    soundscapes.main(["--fsdd_dir", str(fsdd_dir), "--output_dir", str(tmp_path), "--num_train", "2", "--num_eval",
                      "2", "--eval_takes"])  # fmt: skip
    heard = soundscapes.render_soundscape(soundscapes.soundscape_rng(0, "eval", 1), pools["eval"])
    written, _ = soundfile.read(tmp_path / "eval" / "audio" / "eval_00001.wav")
    np.testing.assert_allclose(written, soundscapes.mix(heard), atol=1 / 32767)  # 16-bit quantisation
    with pytest.raises(SystemExit):
        soundscapes.main(["--fsdd_dir", str(fsdd_dir), "--output_dir", str(tmp_path), "--eval_takes",
                          "--eval_speakers", "theo"])  # fmt: skip
    later_takes = tmp_path / "later_takes"  # a folder without takes 0-4 has nothing to evaluate on
    later_takes.mkdir()
    for path in fsdd_dir.glob("*_1[0-9].wav"):
        (later_takes / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="no eval recordings in .*later_takes"):
        soundscapes.split_recordings(later_takes, None)


def test_written_audio_is_the_rendered_mixture_of_its_split(soundscapes, written, fsdd_dir):
    # Ties the files to `render_soundscape` (whose labels the next test checks) and each split to its speakers' pool.
    _, folders = written
    pools = soundscapes.split_recordings(fsdd_dir, EVAL_SPEAKERS)
    pools["validation"] = pools["train"]  # new mixtures of the training recordings: no held-out voice
    for split, count in (("train", 6), ("eval", 4), ("validation", 3)):
        events = read_strong_tsv(folders[split] / "strong.tsv")
        for index in range(count):
            name = f"{split}_{index:05d}.wav"
            rendered = soundscapes.render_soundscape(soundscapes.soundscape_rng(3, split, index), pools[split])
            audio, rate = soundfile.read(folders[split] / "audio" / name)
            assert rate == RATE and audio.shape == (10 * RATE,)
            mixture = rendered.foreground + rendered.background
            expected = mixture * min(1.0, 0.99 / np.abs(mixture).max())
            np.testing.assert_allclose(audio, expected, atol=1 / 32767)  # 16-bit quantisation
            assert events[name] == rendered.events


def test_a_loud_mixture_is_scaled_down_as_a_whole(soundscapes):
    # About 1 soundscape in 13 would peak above 0.99: foreground and background shrink by the same factor.
    foreground, background = np.zeros(100), np.full(100, 0.5)
    foreground[10] = 3.0
    mixture = soundscapes.mix(soundscapes.Soundscape(foreground, background, [(0.0, 0.1, "one")]))
    np.testing.assert_allclose(mixture, (foreground + background) * 0.99 / 3.5, rtol=1e-6)
    quiet = soundscapes.mix(soundscapes.Soundscape(foreground / 10, background / 10, []))
    np.testing.assert_allclose(quiet, (foreground + background) / 10, rtol=1e-6)


def test_dcase_files(written):
    _, folders = written
    for split, count in (("train", 6), ("eval", 4)):
        folder = folders[split]
        names = [f"{split}_{index:05d}.wav" for index in range(count)]
        assert sorted(path.name for path in (folder / "audio").iterdir()) == names
        durations = "filename\tduration\n" + "".join(f"{name}\t10.000\n" for name in names)
        assert (folder / "durations.tsv").read_text() == durations

        strong_lines = (folder / "strong.tsv").read_text().splitlines()
        assert strong_lines[0] == "filename\tonset\toffset\tevent_label"
        for line in strong_lines[1:]:
            name, onset, offset, label = line.split("\t")
            if label:  # times in seconds with exactly 3 decimals, a digit name as label
                assert len(onset.split(".")[1]) == 3 and len(offset.split(".")[1]) == 3 and label in DIGIT_NAMES
                assert 0 <= float(onset) < float(offset) <= 10
            else:  # a soundscape without digits: its filename alone
                assert onset == offset == ""
        strong = read_strong_tsv(folder / "strong.tsv")
        assert list(strong) == names  # every soundscape listed, with or without events
        for events in strong.values():
            labels = [label for _, _, label in events]
            assert len(labels) <= 4 and len(set(labels)) == len(labels)  # distinct digits: one class never overlaps

        weak_lines = (folder / "weak.tsv").read_text().splitlines()
        assert weak_lines[0] == "filename\tevent_labels"
        assert weak_lines[1:] == [f"{name}\t{','.join(label for *_, label in strong[name])}" for name in names]


@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated")  # dcase_util's import
def test_sed_scores_eval_reads_the_files(written):
    # The DCASE evaluation library's own readers agree with ours (it keys clips without the extension).
    from sed_scores_eval.base_modules.io import read_audio_durations, read_ground_truth_events

    _, folders = written
    for folder in folders.values():
        ours = {name.removesuffix(".wav"): events for name, events in read_strong_tsv(folder / "strong.tsv").items()}
        theirs = read_ground_truth_events(folder / "strong.tsv")
        assert {clip: [tuple(event) for event in events] for clip, events in theirs.items()} == ours
        assert read_audio_durations(folder / "durations.tsv") == dict.fromkeys(ours, 10.0)


def frame_energy(samples: np.ndarray) -> np.ndarray:
    return (samples[: samples.size // FRAME * FRAME].reshape(-1, FRAME) ** 2).mean(axis=1)


def test_each_event_is_audible_exactly_where_its_label_says(soundscapes, fsdd_dir):
    pools = soundscapes.split_recordings(fsdd_dir, EVAL_SPEAKERS)
    checked = 0
    for index in range(24):
        rendered = soundscapes.render_soundscape(soundscapes.soundscape_rng(0, "train", index), pools["train"])
        spans = [(round(onset * RATE), round(offset * RATE)) for onset, offset, _ in rendered.events]
        labelled = np.zeros(10 * RATE, dtype=bool)
        for start, stop in spans:
            labelled[start:stop] = True
        assert not rendered.foreground[~labelled].any()  # no digit sound outside the labels
        # Noise level: the median RMS of 1 s of background (distractors, 2.4 s at most, move it little).
        noise_rms = np.median(np.sqrt((rendered.background.reshape(10, RATE) ** 2).mean(axis=1)))
        for start, stop in spans:
            overlapping = any(s < stop and start < e for s, e in spans if (s, e) != (start, stop))
            if overlapping:
                continue
            energy = frame_energy(rendered.foreground[start:stop])
            # The span is the recording's audible part: its first and last 10 ms within 30 dB of its loudest.
            assert min(energy[0], energy[-1]) >= energy.max() * 10**-3
            snr_db = 10 * np.log10(np.mean(rendered.foreground[start:stop] ** 2)) - 20 * np.log10(noise_rms)
            assert 6 - 1 <= snr_db <= 30 + 1
            checked += 1
    assert checked >= 20  # enough events were alone to check


def test_bad_arguments(soundscapes, fsdd_dir, tmp_path):
    with pytest.raises(ValueError, match="num_eval must be a non-negative integer"):
        soundscapes.make_soundscapes(fsdd_dir, tmp_path, num_train=2, num_eval=-1)
