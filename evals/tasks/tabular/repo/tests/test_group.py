from tabular import group

ROWS = [
    {"region": "north", "revenue": 100, "units": 4},
    {"region": "south", "revenue": 50, "units": 1},
    {"region": "north", "revenue": 300, "units": 6},
]


def test_group_by_keeps_first_appearance_order():
    assert list(group.group_by(ROWS, "region")) == ["north", "south"]


def test_aggregate():
    assert group.aggregate(ROWS, "region", {"revenue": "sum", "units": "mean"}) == [
        {"region": "north", "revenue": 400, "units": 5},
        {"region": "south", "revenue": 50, "units": 1},
    ]
