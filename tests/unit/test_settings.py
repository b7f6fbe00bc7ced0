"""Settings that cannot work together are refused when the worker starts, naming what is missing."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from atlas.settings import Settings


@pytest.mark.parametrize("given", ["web_tls_cert", "web_tls_key"])
def test_a_web_certificate_without_its_key_or_a_key_without_its_certificate_is_refused_at_start(given, tmp_path):
    with pytest.raises(ValidationError, match="ATLAS_WEB_TLS_CERT and ATLAS_WEB_TLS_KEY go together"):
        Settings(**{given: tmp_path / "x.pem"})
