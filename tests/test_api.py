"""The public API: a sorted __all__ of names that exist (httpx's test_exported_members)."""

import abfluss


def test_all_is_sorted_and_complete():
    assert abfluss.__all__ == sorted(abfluss.__all__)
    for name in abfluss.__all__:
        assert hasattr(abfluss, name), name


def test_public_functions_are_documented():
    for name in abfluss.__all__:
        obj = getattr(abfluss, name)
        assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
