import pytest

from tabular import window


def test_window_size_must_be_positive():
    with pytest.raises(ValueError):
        window.rolling_mean([1, 2, 3], 0)


def test_rolling_sum_window_larger_than_series():
    assert window.rolling_sum([1, 2], 5) == [None, None]
