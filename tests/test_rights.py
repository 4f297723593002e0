"""Rights classes of licence and rights-statement URIs."""

from __future__ import annotations

import pytest

from iconosearch.rights import allows_derivatives, canonical_rights, rights_class


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://creativecommons.org/publicdomain/zero/1.0/", "open"),
        ("https://creativecommons.org/publicdomain/mark/1.0/", "open"),
        ("https://creativecommons.org/licenses/by/4.0/", "open"),
        ("http://creativecommons.org/licenses/by-sa/3.0/", "open"),
        ("HTTPS://CreativeCommons.org/licenses/BY-SA/4.0", "open"),
        ("http://rightsstatements.org/vocab/NoC-US/1.0/", "open"),
        ("http://rightsstatements.org/vocab/NoC-OKLR/1.0/", "open"),
        ("https://creativecommons.org/licenses/by-nc/4.0/", "restricted"),
        ("https://creativecommons.org/licenses/by-nc-sa/4.0/", "restricted"),
        ("https://creativecommons.org/licenses/by-nd/4.0/", "restricted"),
        ("http://rightsstatements.org/vocab/InC/1.0/", "restricted"),
        ("http://rightsstatements.org/vocab/InC-EDU/1.0/", "restricted"),
        ("http://rightsstatements.org/page/InC-NC/1.0/?language=en", "restricted"),
        ("http://www.europeana.eu/rights/rr-f/", "restricted"),
        ("http://rightsstatements.org/vocab/CNE/1.0/", "unknown"),
        ("http://rightsstatements.org/vocab/UND/1.0/", "unknown"),
        ("http://www.europeana.eu/rights/out-of-copyright-non-commercial/", "unknown"),
        ("http://hdl.handle.net/10107/Copyright_AllRightsReserved", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_rights_class(uri: str | None, expected: str) -> None:
    assert rights_class(uri) == expected


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        (
            "https://creativecommons.org/publicdomain/zero/1.0/",
            "http://creativecommons.org/publicdomain/zero/1.0/",
        ),
        (
            "https://creativecommons.org/publicdomain/mark/1.0",
            "http://creativecommons.org/publicdomain/mark/1.0/",
        ),
        (
            "HTTPS://www.CreativeCommons.org/licenses/BY-SA/4.0/legalcode",
            "http://creativecommons.org/licenses/by-sa/4.0/",
        ),
        (
            "https://creativecommons.org/licenses/by/4.0/deed.fr",
            "http://creativecommons.org/licenses/by/4.0/",
        ),
        ("http://creativecommons.org/licenses/by/3.0/nl/", "http://creativecommons.org/licenses/by/3.0/nl/"),
        ("https://rightsstatements.org/vocab/inc/1.0/", "http://rightsstatements.org/vocab/InC/1.0/"),
        (
            "http://rightsstatements.org/page/NoC-US/1.0/?language=en",
            "http://rightsstatements.org/vocab/NoC-US/1.0/",
        ),
        (
            "http://rightsstatements.org/vocab/InC-OW-EU/1.0/",
            "http://rightsstatements.org/vocab/InC-OW-EU/1.0/",
        ),
        ("http://rightsstatements.org/vocab/NotAStatement/1.0/", None),
        ("http://www.europeana.eu/rights/rr-f/", None),
        ("https://creativecommons.org/about/", None),
        ("", None),
        (None, None),
    ],
)
def test_canonical_rights(uri: str | None, canonical: str | None) -> None:
    assert canonical_rights(uri) == canonical
    if canonical is not None:
        # Both forms are classified the same, and the canonical form is a fixed point.
        assert rights_class(canonical) == rights_class(uri)
        assert canonical_rights(canonical) == canonical


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("http://creativecommons.org/licenses/by-nd/4.0/", False),
        ("https://creativecommons.org/licenses/by-nc-nd/3.0/deed.de", False),
        ("HTTPS://CreativeCommons.org/licenses/BY-ND/2.0", False),
        ("http://creativecommons.org/licenses/by/4.0/", True),
        ("http://creativecommons.org/licenses/by-nc-sa/4.0/", True),
        ("http://creativecommons.org/publicdomain/mark/1.0/", True),
        ("http://creativecommons.org/publicdomain/zero/1.0/", True),
        ("http://rightsstatements.org/vocab/InC/1.0/", True),
        ("http://example.org/nd/terms", True),
        ("", True),
        (None, True),
    ],
)
def test_allows_derivatives(uri: str | None, allowed: bool) -> None:
    assert allows_derivatives(uri) is allowed
