"""The CLI's own input handling (commands that read files before calling anything)."""
from cli.main import _read_text_lines, main


def test_predict_names_the_file_and_line_that_is_not_utf8(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_bytes("\ufefffine\r\nalso fine\r\n".encode() + b"caf\xe9\n")
    assert main(["predict", "--server", "grpc://127.0.0.1:1", "--input", str(texts)]) == 1
    assert (f"{texts}: line 3: invalid UTF-8 (byte 0xe9 at offset 23); re-encode the file "
            f"as UTF-8") in capsys.readouterr().err


def test_predict_reads_lines_without_bom_or_line_endings(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_bytes("\ufefffirst\tpair\r\n\r\nsecond\n".encode())
    assert _read_text_lines(str(texts)) == ["first\tpair", "second"]


def test_score_names_its_own_flags_in_reader_errors(tmp_path, capsys):
    data = tmp_path / "news.csv"
    data.write_text('3,"Fears for pension after talks","Unions said"\n')
    assert main(["score", "--model", str(tmp_path / "no_model"), "--data", str(data),
                 "--label_column", "class", "--text_column", "title"]) == 1
    err = capsys.readouterr().err
    assert "set --text_column to column names" in err and "with --column_names" in err
    assert "data." not in err
