import pytest

from veil.data import format_size, parse_size, validate_name
from veil.data._names import parse_labels
from veil.errors import InvalidArgument


@pytest.mark.parametrize("name", ["a", "inference-data", "v1.2_b", "0", "a" * 253])
def test_valid_names_are_accepted(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [("", "empty"), ("..", "'.' and '..'"), (".", "'.' and '..'"), ("a/b", "'/'"),
     ("a" * 254, "at most 253"), ("Data", "not allowed"), ("a b", "not allowed"),
     ("ü", "not allowed"), ("x;rm", "not allowed")],
)
def test_invalid_names_are_refused_with_the_reason(name, why):
    with pytest.raises(InvalidArgument, match=why):
        validate_name(name)


@pytest.mark.parametrize(
    ("text", "size"),
    [("50Gi", 50 * 2**30), ("1G", 10**9), ("500Mi", 500 * 2**20), ("1024", 1024),
     ("1.5Ki", 1536), ("2Ti", 2 * 2**40), (" 7k ", 7000)],
)
def test_sizes_parse_like_kubernetes_quantities(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "12Qi", "-5Gi", "0", "1.2.3G", "Gi", "5 GB"])
def test_sizes_that_do_not_parse_are_refused(text):
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_size(text)


def test_format_size_uses_binary_units():
    assert format_size(None) == "-"
    assert format_size(512) == "512B"
    assert format_size(50 * 2**30) == "50Gi"
    assert format_size(1536) == "1.5Ki"


@pytest.mark.parametrize(
    ("text", "why"),
    [("9Ei", "less than 8Ei"), ("8Ei", "less than 8Ei"), ("9223372036854775808", "less than 8Ei"),
     ("1" * 400, "400 digits"), ("9" * 100_000 + "Ki", "100000 digits"), ("0.4", "at least 1 byte"),
     (2**63, "less than 8Ei"), (0, "must be positive")],
)
def test_sizes_past_what_a_file_can_hold_are_refused_before_any_arithmetic(text, why):
    with pytest.raises(InvalidArgument, match=why):
        parse_size(text)


def test_the_largest_size_is_one_byte_under_8ei():
    assert parse_size("9223372036854775807") == 2**63 - 1
    assert parse_size("7.5Ei") == 15 * 2**59
    assert parse_size("0.5Ki") == 512  # exact, not through a float


@pytest.mark.parametrize(
    ("labels", "why"),
    [(["a=b\nc"], "control characters"), (["a\tb=c"], "control characters"),
     (["k" * 254 + "=v"], "at most 253"), (["k=" + "v" * 4097], "at most 4096"),
     (["=v"], "key=value"), (["novalue"], "key=value")],
)
def test_labels_that_cannot_be_shown_on_one_line_are_refused(labels, why):
    with pytest.raises(InvalidArgument, match=why):
        parse_labels(labels)


def test_labels_keep_spaces_and_non_ascii_text():
    assert parse_labels(["purpose=triton model repository", "owner=Zoë"]) == {
        "purpose": "triton model repository", "owner": "Zoë"}
