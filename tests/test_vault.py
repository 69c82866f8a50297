"""Unit tests of companion.vault: sealing, wrapping and the master key, without a database."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from companion.vault import DataKey, IntegrityError, MasterKey, MasterKeyError, open_text, seal_text
from companion.vault.master import load_or_create

WHERE = ("notes", "3f1c0d2e-5b7a-4c11-9e0f-7a1b2c3d4e5f", "body")


@pytest.fixture
def key() -> DataKey:
    return DataKey.generate("group-a")


# --- sealing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Zéphyrine Quenouille",
        "Mon équipe ne délègue pas 😅 — ni à Noël 🎄, ni à l'été ☀️",
        "",
        "\u0000 nul, tab\t, retour\r\n, ligne\n",
        "漢字とかな、العربية, עברית, ελληνικά",
        "e\u0301 (NFD) and \u00e9 (NFC) stay as they were",
        "x" * 100_000,
    ],
)
def test_seal_and_open_round_trip(key, text):
    sealed = seal_text(key, text, *WHERE)
    assert open_text(key, sealed, *WHERE) == text
    assert isinstance(sealed, bytes)
    # format byte + 12-byte nonce + ciphertext (as long as the plaintext) + 16-byte tag
    assert len(sealed) == 1 + 12 + len(text.encode()) + 16
    if text:
        assert text.encode() not in sealed


def test_each_seal_uses_a_fresh_nonce(key):
    first = seal_text(key, "Zéphyrine Quenouille", *WHERE)
    second = seal_text(key, "Zéphyrine Quenouille", *WHERE)
    assert first != second
    assert first[1:13] != second[1:13]
    assert open_text(key, first, *WHERE) == open_text(key, second, *WHERE)


@pytest.mark.parametrize(
    ("record_type", "record_id", "field"),
    [
        ("contracts", WHERE[1], "body"),  # another table
        ("notes", "4a2b0c9d-0000-4000-8000-000000000000", "body"),  # another row
        ("notes", WHERE[1], "text"),  # another column
        ("notes", WHERE[1].upper(), "body"),  # ids are compared exactly
    ],
)
def test_a_seal_does_not_open_anywhere_else(key, record_type, record_id, field):
    sealed = seal_text(key, "Zéphyrine Quenouille", *WHERE)
    with pytest.raises(IntegrityError) as caught:
        open_text(key, sealed, record_type, record_id, field)
    message = str(caught.value)
    assert f"{record_type} {record_id} ({field}) failed its integrity check" in message
    assert "altered" in message
    assert "group-a" in message
    assert "Zéphyrine" not in message


def test_a_seal_does_not_open_in_another_scope_even_with_the_same_material(key):
    sealed = seal_text(key, "Zéphyrine Quenouille", *WHERE)
    same_material = DataKey("group-b", key.material)
    with pytest.raises(IntegrityError, match="does not belong to group-b"):
        open_text(same_material, sealed, *WHERE)


def test_a_seal_does_not_open_with_another_key(key):
    sealed = seal_text(key, "Zéphyrine Quenouille", *WHERE)
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        open_text(DataKey.generate("group-a"), sealed, *WHERE)


def test_the_associated_data_is_unambiguous(key):
    # ("ab", "c") and ("a", "bc") must not be the same place.
    sealed = key.seal(b"x", "notes", "ab", "c")
    with pytest.raises(IntegrityError):
        key.open(sealed, "notes", "a", "bc")
    assert key.open(sealed, "notes", "ab", "c") == b"x"


def test_every_single_bit_flip_is_detected(key):
    sealed = seal_text(key, "Zoé", *WHERE)
    for index in range(len(sealed)):
        for bit in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[index] ^= bit
            with pytest.raises(IntegrityError, match="failed its integrity check"):
                open_text(key, bytes(tampered), *WHERE)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s[:1], id="format byte only"),
        pytest.param(lambda s: s[:13], id="no ciphertext nor tag"),
        pytest.param(lambda s: s[:28], id="one byte short of a tag"),
        pytest.param(lambda s: s[:-1], id="last byte cut"),
        pytest.param(lambda s: s + b"\x00", id="byte appended"),
        pytest.param(lambda s: b"\x02" + s[1:], id="unknown format"),
        pytest.param(lambda s: s[1:], id="format byte missing"),
        pytest.param(lambda s: "Zéphyrine".encode() + bytes(29), id="plaintext"),
    ],
)
def test_truncated_or_foreign_values_do_not_open(key, mangle):
    sealed = seal_text(key, "Zéphyrine", *WHERE)
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        open_text(key, mangle(sealed), *WHERE)


def test_a_value_of_unknown_format_says_so(key):
    with pytest.raises(IntegrityError) as caught:
        open_text(key, b"\x02" + bytes(40), *WHERE)
    assert "not a sealed value of a known format" in str(caught.value.__cause__)


def test_a_non_utf8_plaintext_is_not_returned_as_text(key):
    sealed = key.seal(b"\xff\xfe", *WHERE)
    with pytest.raises(UnicodeDecodeError):
        open_text(key, sealed, *WHERE)


# --- wrapping data keys ---------------------------------------------------------------------


def test_wrap_and_unwrap_round_trip(key):
    master = MasterKey.generate()
    wrapped = key.wrap(master, "row-1")
    assert key.material not in wrapped
    assert DataKey.unwrap(master, "group-a", "row-1", wrapped) == key
    assert key.wrap(master, "row-1") != wrapped  # fresh nonce each time


def test_unwrap_with_the_wrong_master_key_raises_master_key_error(key):
    wrapped = key.wrap(MasterKey.generate(), "row-1")
    with pytest.raises(MasterKeyError) as caught:
        DataKey.unwrap(MasterKey.generate(), "group-a", "row-1", wrapped)
    message = str(caught.value)
    assert "data key of scope group-a does not open with this master key" in message
    assert "wrong master key" in message
    assert isinstance(caught.value.__cause__, IntegrityError)


@pytest.mark.parametrize(
    ("scope", "row_id", "mangle"),
    [
        pytest.param("group-b", "row-1", bytes, id="another scope"),
        pytest.param("group-a", "row-2", bytes, id="another key row"),
        pytest.param("group-a", "row-1", lambda w: w[:-1], id="truncated"),
        pytest.param("group-a", "row-1", lambda w: w[:-1] + bytes([w[-1] ^ 1]), id="flipped"),
    ],
)
def test_a_wrapped_key_only_unwraps_where_it_was_wrapped(key, scope, row_id, mangle):
    master = MasterKey.generate()
    wrapped = key.wrap(master, "row-1")
    with pytest.raises(MasterKeyError, match=f"data key of scope {scope} does not open"):
        DataKey.unwrap(master, scope, row_id, mangle(wrapped))


# --- the master key ---------------------------------------------------------------------------


def test_master_key_base64_round_trip():
    master = MasterKey.generate()
    assert MasterKey.from_b64(master.to_b64()) == master
    assert MasterKey.from_b64(f"  {master.to_b64()}\n") == master
    assert len(master.key_id) == 16
    assert master.key_id == MasterKey(master.material).key_id
    assert master.key_id != MasterKey.generate().key_id
    assert master.key_id not in master.to_b64()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "32 bytes, got 0", id="empty"),
        pytest.param("   \n", "32 bytes, got 0", id="blank"),
        pytest.param("not base64 at all!", "not valid base64", id="not base64"),
        pytest.param(base64.b64encode(bytes(32)).decode()[:-2], "not valid base64", id="cut"),
        pytest.param(base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "not valid", id="urlsafe"),
        pytest.param("clé" * 12, "not valid base64", id="non-ascii"),
        pytest.param(base64.b64encode(bytes(16)).decode(), "32 bytes, got 16", id="16 bytes"),
        pytest.param(base64.b64encode(bytes(33)).decode(), "32 bytes, got 33", id="33 bytes"),
    ],
)
def test_from_b64_rejects_bad_input(text, reason):
    with pytest.raises(MasterKeyError, match=reason):
        MasterKey.from_b64(text)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_master_key_is_exactly_32_bytes(size):
    with pytest.raises(MasterKeyError, match=f"got {size}"):
        MasterKey(bytes(size))


def test_the_key_file_is_written_0600_and_read_back(tmp_path):
    master = MasterKey.generate()
    path = tmp_path / "keys" / "master.key"
    old_umask = os.umask(0)
    try:
        master.write(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert MasterKey.read(path) == master
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp file left


def test_reading_a_missing_or_bad_key_file_names_it(tmp_path):
    missing = tmp_path / "nowhere.key"
    with pytest.raises(MasterKeyError, match=r"cannot read the master key file .*nowhere\.key"):
        MasterKey.read(missing)
    bad = tmp_path / "bad.key"
    bad.write_text("definitely not a key")
    with pytest.raises(MasterKeyError, match="not valid base64"):
        MasterKey.read(bad)


def test_load_or_create_prefers_the_env_value_and_creates_the_file_once(tmp_path):
    path = tmp_path / "master.key"
    env_key = MasterKey.generate()
    assert load_or_create(env_key.to_b64(), path) == env_key
    assert not path.exists()
    created = load_or_create(None, path)
    assert path.exists()
    assert load_or_create(None, path) == created
    assert load_or_create("", path) == created
