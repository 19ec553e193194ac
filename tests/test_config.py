"""Store URLs and credentials: parsing, environment, and never showing secrets."""

from __future__ import annotations

import logging

import pytest

from parquedb_ibis.config import DEFAULT_LOCAL_DIR, Secret, parse_url
from parquedb_ibis.errors import ConfigurationError, ParqueDBError

CLEAN_ENV = ["PARQUEDB_URL", "R2_ACCOUNT_ID", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "R2_ENDPOINT",
             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)


def test_no_url_means_the_local_default_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_url()
    assert config.scheme == "file"
    assert config.root == str(tmp_path / DEFAULT_LOCAL_DIR)


def test_parquedb_url_environment_variable_names_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("PARQUEDB_URL", str(tmp_path / "elsewhere"))
    assert parse_url().root == str(tmp_path / "elsewhere")


@pytest.mark.parametrize("url", ["data", "./data", "file://{tmp}/data"])
def test_local_paths_and_file_urls(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_url(url.format(tmp=tmp_path))
    assert config.is_local and config.root == str(tmp_path / "data")


def test_s3_url_with_prefix_and_env_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    config = parse_url("s3://my-bucket/some/prefix/", endpoint="http://127.0.0.1:9000")
    assert (config.scheme, config.bucket, config.root) == ("s3", "my-bucket", "some/prefix")
    assert config.endpoint == "http://127.0.0.1:9000" and not config.use_ssl
    assert config.endpoint_host == "127.0.0.1:9000"
    assert config.url == "s3://my-bucket/some/prefix"


def test_r2_url_builds_the_account_endpoint(monkeypatch):
    monkeypatch.setenv("R2_ACCOUNT_ID", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("R2_ACCESS_KEY_ID", "r2-key")
    monkeypatch.setenv("R2_SECRET_ACCESS_KEY", "r2-secret-value")
    config = parse_url("r2://logs/workers")
    assert config.endpoint == "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
    assert config.region == "auto" and config.use_ssl


def test_credentials_never_appear_in_repr_str_or_logs(caplog):
    config = parse_url("s3://my-bucket/p", access_key_id="AKIA-visible-id", secret_access_key="hunter2-secret",
                       session_token="tok-secret")
    text = repr(config) + str(config) + repr(config.secret_access_key) + f"{config.session_token}"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("parquedb_ibis").info("config %r %s", config, config)
    for secret in ("hunter2-secret", "tok-secret", "AKIA-visible-id"):
        assert secret not in text
        assert secret not in caplog.text
    assert config.secret_access_key.reveal() == "hunter2-secret"
    assert Secret("x") == Secret("x") and Secret("x") != Secret("y")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://bucket/x", r"unknown scheme 'ftp'"),
        ("s4://bucket/x", r"unknown scheme 's4'; did you mean 's3'\?"),
        ("s3://", r"'' is not a valid bucket name"),
        ("s3:///prefix", r"is not a valid bucket name"),
        ("s3://Bad_Bucket/x", r"'Bad_Bucket' is not a valid bucket name"),
        ("s3://bucket/a/../b", r"must not contain empty, '\.' or '\.\.' segments"),
        ("s3://bucket/x?versionId=1", r"query strings"),
        ("", r"empty store URL"),
    ],
)
def test_malformed_urls_get_one_clear_error(url, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_url(url, access_key_id="k", secret_access_key="s")
    assert isinstance(info.value, (ParqueDBError, ValueError))


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(ConfigurationError) as info:
        parse_url("s3://user:pass-secret@bucket/x")
    assert "pass-secret" not in str(info.value)


def test_missing_s3_credentials_say_how_to_fix():
    with pytest.raises(ConfigurationError, match=r"s3://bucket: missing credentials .*AWS_ACCESS_KEY_ID"):
        parse_url("s3://bucket/x")


def test_missing_r2_account_id_says_where_to_find_it():
    with pytest.raises(ConfigurationError, match=r"r2://bucket: no R2 account id; pass account_id=.*R2_ACCOUNT_ID"):
        parse_url("r2://bucket/x", access_key_id="k", secret_access_key="s")


def test_missing_r2_secret_key_is_named():
    with pytest.raises(ConfigurationError, match=r"no secret access key.*R2_SECRET_ACCESS_KEY"):
        parse_url("r2://bucket/x", account_id="0123456789abcdef0123456789abcdef", access_key_id="k")


def test_unknown_option_is_rejected_with_a_hint():
    with pytest.raises(ConfigurationError, match=r"unknown option 'endpont'; did you mean 'endpoint'\?"):
        parse_url("s3://bucket/x", endpont="http://x")


def test_remote_options_on_a_local_store_are_rejected(tmp_path):
    with pytest.raises(ConfigurationError, match="only apply to s3:// and r2://"):
        parse_url(str(tmp_path), endpoint="http://127.0.0.1:1")
