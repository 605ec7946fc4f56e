import pytest

from tabular import stats


def test_mean_ignores_none():
    assert stats.mean([1, None, 2, 3]) == 2


def test_median_odd():
    assert stats.median([5, 1, 3]) == 3


@pytest.mark.parametrize(("p", "expected"), [(0, 1), (50, 3), (25, 2)])
def test_percentile(p, expected):
    assert stats.percentile([1, 2, 3, 4, 5], p) == expected


def test_percentile_range():
    with pytest.raises(ValueError):
        stats.percentile([1], 101)


def test_stdev_needs_two_values():
    with pytest.raises(ValueError):
        stats.stdev([1])


def test_empty_inputs():
    for function in (stats.mean, stats.median):
        with pytest.raises(ValueError):
            function([None])
