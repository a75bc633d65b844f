"""The simulator's usage record: empty by default, added field by field, spelt in the API's
``Data`` names and in the admin endpoint's JSON names."""

import time

from exporter.simulator.usage import Usage, WallClock

#: The answer's Data fields as api.md names them: spelt here, not taken from the module.
DATA_NAMES = ("InTotal", "OutTotal", "Total", "RequestTotal", "ImageGenerationNum")


def test_no_usage_is_all_zeros() -> None:
    assert Usage().as_dict() == {"input_tokens": 0, "output_tokens": 0, "tokens": 0,
                                 "requests": 0, "image_generations": 0}


def test_usages_add_field_by_field() -> None:
    total = Usage(1, 20, 300, 4000, 50_000) + Usage(6, 70, 800, 9000, 10_000)
    assert total == Usage(7, 90, 1100, 13_000, 60_000)


def test_admin_json_names_each_field() -> None:
    assert Usage(1, 2, 3, 4, 5).as_dict() == {"input_tokens": 1, "output_tokens": 2,
                                              "tokens": 3, "requests": 4,
                                              "image_generations": 5}


def test_answer_data_names_each_total_as_the_api_does() -> None:
    # InTotal is input tokens (one vendor page mislabels it), Total is in + out.
    assert Usage(1, 2, 3, 4, 5).data() == dict(zip(DATA_NAMES, (1, 2, 3, 4, 5), strict=True))


def test_the_wall_clock_is_the_machine_clock() -> None:
    before = time.time()
    now = WallClock().time()
    assert before <= now <= time.time()
