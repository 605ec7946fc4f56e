"""Secret stripping: names by pattern (case-insensitive), user-listed names, and aliases."""

from __future__ import annotations

import pytest

from codeagent.sandbox.environment import is_secret_name, scrub_env

HARMLESS = {
    "PATH": "/usr/local/bin:/usr/bin",
    "HOME": "/home/u",
    "LANG": "C.UTF-8",
    "GIT_AUTHOR_NAME": "Dev",
    "HF_HOME": "/home/u/.cache/hf",
    "VIRTUAL_ENV": "/home/u/project/.venv",
    "KEYBOARD_LAYOUT": "us",
}


def test_secret_variables_are_stripped_with_their_aliases():
    secrets = {
        "GITHUB_TOKEN": "ghs_abcdefghijkl",
        "OPENAI_API_KEY": "sk-1234567890",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-1",
        "db_password": "hunter2hunter2",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "my_session_cookie": "c00kie-value",
        "INNOCENT_ALIAS": "ghs_abcdefghijkl",
        "CUSTOM_THING": "custom-value-1",
    }
    assert scrub_env(HARMLESS | secrets, extra_names=["custom_thing"]) == HARMLESS


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "gh_token",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "CODEAGENT_API_KEY",
        "HF_TOKEN",
        "NPM_TOKEN",
        "AWS_PROFILE",
        "AZURE_CLIENT_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SSH_AUTH_SOCK",
        "PGPASSWORD",
        "MY_APIKEY",
        "STRIPEKEY",
        "DOCKER_AUTH_CONFIG",
        "DBUS_SESSION_BUS_ADDRESS",
        "XAUTHORITY",
        "SIGNING_KEY",
    ],
)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [*HARMLESS, "AUTHOR", "TOKENIZERS_PARALLELISM", "PWD", "TERM"])
def test_harmless_names(name):
    assert not is_secret_name(name)


def test_short_values_are_not_treated_as_aliases():
    env = {"SOME_TOKEN": "1", "VERBOSE": "1", "PATH": "/usr/bin"}
    assert scrub_env(env) == {"VERBOSE": "1", "PATH": "/usr/bin"}
