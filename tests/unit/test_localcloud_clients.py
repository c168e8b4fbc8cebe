"""Scripts and tests build AWS clients that can only ever reach the local cloud."""

import pytest

from valerix_localcloud.clients import NotLocalEndpointError, assert_local_endpoint, local_client


@pytest.mark.parametrize("url", ["http://127.0.0.1:4566", "http://localhost:4566", "http://[::1]:4566"])
def test_loopback_endpoints_are_accepted(url):
    assert assert_local_endpoint(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.us-east-1.amazonaws.com",
        "https://lambda.eu-west-1.amazonaws.com/",
        "http://10.0.0.5:4566",
        "http://192.168.1.20:4566",
        "not a url",
    ],
)
def test_anything_that_may_be_real_aws_is_refused(url):
    with pytest.raises(NotLocalEndpointError):
        assert_local_endpoint(url)


def test_clients_refuse_a_remote_endpoint_before_any_request():
    with pytest.raises(NotLocalEndpointError):
        local_client("sqs", "https://sqs.us-east-1.amazonaws.com")
    client = local_client("sqs", "http://127.0.0.1:4566")
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
