import numpy as np
import pytest
from click.testing import CliRunner

from cascade.cli import main
from convert import rle
from convert.classes import CLASSES
from plumbing.errors import DataError
from convert.submission import (encode_masks, merge_submissions, parse_size, read_submission,
                                 validate_submission, write_submission)


def _masks(seed, hw=(32, 24)):
    rng = np.random.default_rng(seed)
    masks = np.zeros((29, *hw), np.uint8)
    for c in range(29):
        if c % 5:  # some classes stay empty
            y, x = rng.integers(0, hw[0] - 4), rng.integers(0, hw[1] - 4)
            masks[c, y:y + 4, x:x + 3] = 1
    masks[27, :, :] = 1  # a full mask
    return masks


@pytest.fixture
def submission(tmp_path):
    path = tmp_path / "sub.csv"
    encoded = {f"img{i}.png": encode_masks(_masks(i)) for i in (3, 1, 2)}
    write_submission(path, encoded)
    return path


def test_written_file_round_trips_with_empty_masks_kept_empty(submission):
    df = read_submission(submission)
    assert list(df.columns) == ["image_name", "class", "rle"]
    assert len(df) == 3 * 29
    assert df["image_name"].tolist()[::29] == ["img1.png", "img2.png", "img3.png"]
    assert df["class"].tolist()[:29] == list(CLASSES)
    assert not df["rle"].isna().any()
    assert df.loc[0, "rle"] == ""  # class 0 is empty in _masks
    for name in ["img1.png", "img2.png", "img3.png"]:
        rows = df[df.image_name == name]
        back = np.stack([rle.decode(code, (32, 24)) for code in rows["rle"]])
        np.testing.assert_array_equal(back, _masks(int(name[3])))


def test_valid_file_passes(submission):
    report = validate_submission(submission, {f"img{i}.png": (32, 24) for i in (1, 2, 3)})
    assert report.ok, report.problems
    assert (report.images, report.rows) == (3, 87)


def _corrupt(path, edit):
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("edit,expected", [
    (lambda L: L.__setitem__(0, "image,class,rle"), "header"),
    (lambda L: L.__setitem__(0, "image_name\u200b,class,rle"), "header is 'image_name\\u200b,class,rle', expected"),
    (lambda L: L.pop(5), "rows for 3 images"),
    (lambda L: L.__setitem__(2, L[2].replace("finger-2", "finger-20")), "expected 'finger-2'"),
    (lambda L: L.__setitem__(3, "img1.png,finger-3,700 100"), "beyond the image"),
    (lambda L: L.__setitem__(3, "img1.png,finger-3,5 10 8 2"), "overlap"),
    (lambda L: L.__setitem__(3, "img1.png,finger-3,5 x"), "integers"),
    (lambda L: L.__setitem__(3, "img1.png,finger-3,9 2 1 1"), "ascending"),
    (lambda L: L.insert(1, L.pop(40)), "not contiguous"),
    (lambda L: L.__setitem__(3, "img1.png,finger-3"), "line 4: 2 fields, expected 3 (image_name,class,rle)"),
    (lambda L: L.__setitem__(1, L[1] + ",extra"), "line 2: 4 fields, expected 3"),
    (lambda L: L.__setitem__(3, "img1.png,finger-3,+10 5"), "'+10'"),
    (lambda L: L.__setitem__(3, "img1.png,finger-3,99999999999999999999999 1"), "out of range"),
])
def test_each_kind_of_mistake_is_reported(submission, edit, expected):
    _corrupt(submission, edit)
    report = validate_submission(submission, default_hw=(32, 24))
    assert not report.ok
    assert any(expected in p for p in report.problems), report.problems


def test_unsorted_images_and_image_list_mismatch(tmp_path):
    path = tmp_path / "s.csv"
    write_submission(path, {"b.png": encode_masks(_masks(0)), "c.png": encode_masks(_masks(1))})
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0]] + text[30:] + text[1:30]) + "\n")
    report = validate_submission(path, {"a.png": (32, 24), "b.png": (32, 24)}, max_problems=5)
    joined = " | ".join(report.problems)
    assert "sorted" in joined and "a.png" in joined and "c.png" in joined


def test_failed_write_leaves_previous_file_untouched(submission):
    before = submission.read_bytes()
    with pytest.raises(ValueError):
        write_submission(submission, {"a.png": ["", ""]})  # not 29 masks
    assert submission.read_bytes() == before
    assert [p.name for p in submission.parent.iterdir()] == ["sub.csv"]


def test_cli_exit_codes(submission, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["validate-submission", str(submission), "--size", "24x32"])
    assert ok.exit_code == 0 and "valid (3 images, 87 rows)" in ok.output
    too_small = runner.invoke(main, ["validate-submission", str(submission), "--size", "4x4"])
    assert too_small.exit_code == 1 and "beyond" in too_small.output
    missing = runner.invoke(main, ["validate-submission", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2
    assert missing.output.strip().count("\n") == 0 and "nope.csv: submission file not found" in missing.output


def test_binary_file_is_a_one_line_error(tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 10)
    result = CliRunner().invoke(main, ["validate-submission", str(junk)])
    assert result.exit_code == 2 and "junk.csv: not a text CSV file" in result.output
    assert "Traceback" not in result.output


def test_missing_rle_field_is_not_an_empty_mask(submission):
    """The row `image,class` with no trailing comma used to pass: pandas pads it with an empty rle."""
    _corrupt(submission, lambda L: L.__setitem__(1, "img1.png,finger-1"))
    assert read_submission(submission).loc[0, "rle"] == ""  # what pandas makes of it
    report = validate_submission(submission, default_hw=(32, 24))
    assert report.problems == ["line 2: 2 fields, expected 3 (image_name,class,rle)"]


def test_blank_lines_are_skipped_like_pandas_does(submission):
    _corrupt(submission, lambda L: L.insert(10, ""))
    assert validate_submission(submission, default_hw=(32, 24)).ok


def test_byte_order_mark_is_accepted_like_pandas_reads_it(submission):
    submission.write_bytes(b"\xef\xbb\xbf" + submission.read_bytes())
    assert list(read_submission(submission).columns) == ["image_name", "class", "rle"]
    report = validate_submission(submission, default_hw=(32, 24))
    assert report.ok, report.problems


def test_merge_is_published_only_once_it_covers_the_images(submission, tmp_path):
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2, 3):
        cv2.imwrite(str(images / f"img{i}.png"), np.zeros((32, 24), np.uint8))
    parts = [tmp_path / "a.csv", tmp_path / "b.csv"]
    write_submission(parts[0], {f"img{i}.png": encode_masks(_masks(i)) for i in (1, 3)})
    write_submission(parts[1], {"img2.png": encode_masks(_masks(2))})
    assert merge_submissions(parts[::-1], tmp_path / "m.csv", images) == 87
    assert (tmp_path / "m.csv").read_bytes() == submission.read_bytes()
    with pytest.raises(DataError, match="short.csv: not written: the merged parts fail the check"):
        merge_submissions(parts[:1], tmp_path / "short.csv", images)
    assert not (tmp_path / "short.csv").exists()
    with pytest.raises(DataError, match="is one of this command's inputs"):
        merge_submissions(parts, parts[0])


@pytest.mark.parametrize("call", [
    lambda p: validate_submission(p),
    lambda p: read_submission(p),
    lambda p: merge_submissions([p], p.parent / "out.csv"),
])
def test_folder_instead_of_a_submission_is_a_data_error(tmp_path, call):
    folder = tmp_path / "sub.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="sub.csv: is a folder, not a submission CSV file$"):
        call(folder)


@pytest.mark.parametrize("args", [
    ["validate-submission", "{dir}"],
    ["merge-submissions", "{dir}", "--out", "{tmp}/m.csv"],
    ["evaluate", "--data", "{tmp}", "--submission", "{dir}", "--out", "{tmp}/rep"],
])
def test_cli_folder_instead_of_a_submission_is_one_line(tmp_path, args):
    folder = tmp_path / "sub.csv"
    folder.mkdir()
    result = CliRunner().invoke(main, [a.format(dir=folder, tmp=tmp_path) for a in args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output == f"error: {folder}: is a folder, not a submission CSV file\n"


@pytest.mark.parametrize("text,hw", [("2048x2048", (2048, 2048)), ("24x32", (32, 24)), (" 24X32 ", (32, 24))])
def test_parse_size(text, hw):
    assert parse_size(text) == hw


@pytest.mark.parametrize("text", ["0x0", "-5x5", "5x-5", "0x5", "5x", "x5", "5", "5x5x5", "+5x5", "\uff15x5", "1_0x5",
                                  "9" * 5000 + "x5"])
def test_parse_size_rejects_non_positive_and_odd_sizes(text):
    with pytest.raises(DataError, match="^--size: .* is not WxH with positive whole numbers"):
        parse_size(text)
