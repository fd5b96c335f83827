import pytest

# conftest_cloud is a plugin (pytest_plugins) that test modules also import by name: registered here, before either
# import, so its asserts are rewritten too.
pytest.register_assert_rewrite("tests.agent.conftest_cloud")
