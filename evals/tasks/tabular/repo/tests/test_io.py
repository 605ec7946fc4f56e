from tabular import io


def test_parse_converts_numbers_and_blanks():
    rows = io.parse_csv("name,qty,price\nbolt,10,0.25\nnut,,1e-1\n")
    assert rows == [{"name": "bolt", "qty": 10, "price": 0.25}, {"name": "nut", "qty": None, "price": 0.1}]


def test_roundtrip(tmp_path):
    rows = [{"city": "Zürich", "temp": 21.5}, {"city": "Oslo", "temp": None}]
    io.write_csv(tmp_path / "t.csv", rows)
    assert io.read_csv(tmp_path / "t.csv") == rows


def test_semicolons(tmp_path):
    (tmp_path / "t.csv").write_text("a;b\n1;x\n", encoding="utf-8")
    assert io.read_csv(tmp_path / "t.csv", delimiter=";") == [{"a": 1, "b": "x"}]
