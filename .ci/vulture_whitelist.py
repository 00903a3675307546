"""Names `vulture` cannot see used: `vulture scalable_pipeline .ci/vulture_whitelist.py --min-confidence 80`."""

DataclassInstance  # core/settings.py: the bound of a TypeVar, written as a string for the type checker
