"""sscxr.catalog: the shipped intake catalog, its YAML round trip, search, reading and building."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import xarray as xr
import zarr

import sscxr
from sscxr import catalog as sc
from sscxr.errors import CatalogError, SchemaError, StoreRootNotSetError, StoreVersionWarning, UnknownEntryError
from sscxr.io import content_version

REPO = Path(__file__).resolve().parents[1]
SESSIONS = ["an197522_2013_03_08", "an197522_2013_03_10", "an229717_2013_12_01", "an229719_2013_12_02",
            "an229719_2013_12_05"]  # fmt: skip
ANIMALS = ["an250220", "an257218", "an257220", "an258836", "an271211", "an272761", "an274424", "an274577",
           "an275798", "an275801", "an276013", "an278288", "an278759", "an278937", "an278939", "an281915"]  # fmt: skip


def test_docs_catalog_runs(monkeypatch):
    import re

    monkeypatch.delenv(sc.STORE_ROOT_ENV, raising=False)
    namespace: dict = {"__name__": "docs.catalog"}
    text = (REPO / "docs" / "catalog.md").read_text()
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
        exec(compile(block, f"docs/catalog.md[block {i}]", "exec"), namespace)


def _entries(cat) -> dict:
    return sc.catalog_dict(cat)["entries"]


# --------------------------------------------------------------------------------------------
# the shipped catalog
# --------------------------------------------------------------------------------------------


def test_shipped_catalog_has_every_session_and_animal():
    cat = sscxr.open_catalog()
    assert sorted(cat) == sorted(SESSIONS + ANIMALS)
    for name in SESSIONS:
        meta = cat.get_entity(name).metadata
        assert meta["archive"] == "ssc-1" and meta["store"] == f"{name}.zarr"
        assert meta["session_date"] == name.split("_", 1)[1].replace("_", "-")
    assert all(cat.get_entity(a).metadata["archive"] == "ssc-11" for a in ANIMALS)


def test_ablation_kinds_and_labs_follow_formats():
    cat = sc.open_catalog()
    assert len(sc.find(cat, ablation="touch")) == 9
    assert len(sc.find(cat, ablation="whisking")) == 7
    assert len(sc.find(cat, ablation="silent")) == 8
    meta = lambda name: cat.get_entity(name).metadata  # noqa: E731
    assert meta("an281915")["ablations"] == ["touch", "whisking"] and meta("an281915")["lab"] == "JRC"
    assert meta("an258836")["conditions"] == ["pre", "post_silent", "post_touch"]
    assert meta("an274424")["conditions"] == ["pre", "post"] and meta("an274424")["lab"] == "NYU"
    assert sc.find(cat, lab="NYU") == ["an272761", "an274424", "an274577", "an275798", "an275801", "an276013",
                                       "an278288", "an278759"]  # fmt: skip


def test_package_copy_is_the_repo_copy():
    packaged = REPO / "sscxr" / "catalogs" / "sscxr.yaml"
    assert packaged.read_bytes() == (REPO / "catalogs" / "sscxr.yaml").read_bytes()


def test_shipped_yaml_matches_the_generator_except_pins():
    shipped, generated = _entries(sc.open_catalog()), _entries(sc.default_catalog())
    assert shipped.keys() == generated.keys()
    for name, entry in shipped.items():
        unpinned = {**entry["metadata"], "content_version": None, "metadata_from": None}
        expected = {**generated[name]["metadata"], "content_version": None, "metadata_from": None}
        if entry["metadata"]["metadata_from"] != "store attrs":
            assert unpinned == expected, name
        assert entry["kwargs"] == generated[name]["kwargs"], name


def test_yaml_round_trip(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    cat = sc.default_catalog()
    sc.write_catalog(cat, first)
    again = sc.open_catalog(first)
    assert sc.catalog_dict(again) == sc.catalog_dict(cat)
    sc.write_catalog(again, second)
    assert first.read_text() == second.read_text()


def test_find():
    assert sc.find(archive="ssc-1") == SESSIONS
    assert sc.find(animal="229719") == ["an229719_2013_12_02", "an229719_2013_12_05"]
    assert sc.find(session_date="2013-03-10") == ["an197522_2013_03_10"]
    assert sc.find(ablation=["whisking", "silent"], lab="NYU") == ["an275798", "an275801", "an276013", "an278288",
                                                                    "an278759"]  # fmt: skip
    assert sc.find(condition="post_whisking", ablation="touch") == ["an281915"]
    assert sc.find(archive="ssc-1", ablation="touch") == []


def test_store_root_parameter(monkeypatch):
    monkeypatch.delenv(sc.STORE_ROOT_ENV, raising=False)
    cat = sc.open_catalog()
    reader = cat["an274424"]
    with pytest.raises(sc.StoreRootNotSetError):  # the default root is a placeholder (see below)
        sc.store_url(reader.kwargs["store"], reader.kwargs["root"])
    monkeypatch.setattr(sc, "DEFAULT_STORE_ROOT_PUBLISHED", True)
    assert sc.store_url(reader.kwargs["store"], reader.kwargs["root"]) == f"{sc.DEFAULT_STORE_ROOT}/an274424.zarr"
    monkeypatch.setenv(sc.STORE_ROOT_ENV, "s3://env-bucket/stores")
    reader = sc.open_catalog()["an274424"]
    assert sc.store_url(reader.kwargs["store"], reader.kwargs["root"]) == "s3://env-bucket/stores/an274424.zarr"
    reader = sc.open_catalog()(store_root="/data/stores")["an274424"]
    assert sc.store_url(reader.kwargs["store"], reader.kwargs["root"]) == "/data/stores/an274424.zarr"


def test_unknown_entry_suggests_the_closest_and_lists_all():
    cat = sscxr.open_catalog()(store_root="/data/stores")  # the parameterised copy keeps the errors
    with pytest.raises(KeyError) as info:
        cat["an274425"]
    err = info.value
    assert isinstance(err, UnknownEntryError) and err.suggestions[0] == "an274424"
    assert err.valid == sorted(SESSIONS + ANIMALS)
    text = str(err)  # the whole message, not KeyError's repr of it
    assert text.startswith("entry='an274425' is not an entry of this catalog; did you mean 'an274424'")
    assert all(repr(name) in text for name in SESSIONS + ANIMALS)
    with pytest.raises(UnknownEntryError, match="did you mean 'an197522_2013_03_08' or 'an197522_2013_03_10'"):
        cat["an197522"]


def test_a_file_that_is_not_an_intake2_catalog_is_a_catalog_error(tmp_path):
    path = tmp_path / "v1.yaml"
    path.write_text("sources:\n  a: {driver: zarr}\n")
    with pytest.raises(CatalogError, match=r"v1.yaml is not an intake 2 catalog \(version: None, expected 2\): "
                                           r"intake says ValueError: Not a V2 catalog"):
        sc.open_catalog(path)


def test_no_store_root_is_one_clear_error_before_any_network_call(monkeypatch):
    monkeypatch.delenv(sc.STORE_ROOT_ENV, raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("open_store was called")

    monkeypatch.setattr(sc, "open_store", no_network)
    with pytest.raises(StoreRootNotSetError) as info:
        sscxr.open_catalog()["an274424"].read()
    text = str(info.value)
    assert text.startswith("no store root is configured") and "an274424.zarr" in text
    assert "SSCXR_STORE_ROOT" in text and 'open_catalog()(store_root="s3://my-bucket/stores")' in text


# --------------------------------------------------------------------------------------------
# reading entries
# --------------------------------------------------------------------------------------------


def test_read_entries_from_a_local_root(session_store, animal_store):
    root = str(Path(session_store[0]).parent)
    cat = sc.open_catalog()(store_root=root)
    session = cat["an197522_2013_03_08"].read()
    assert isinstance(session, xr.DataTree) and session.attrs["archive"] == "ssc-1"
    assert session["imaging/subvolume_01"].dff.chunks is not None  # lazy, chunks: {}
    animal = cat["an274424"].read(groups=["cells"])
    assert list(animal.children) == ["cells"]


def test_reader_refuses_a_store_of_the_other_archive(session_store, tmp_path):
    shutil.copytree(session_store[0], tmp_path / "an274424.zarr")
    with pytest.raises(SchemaError, match="open_session"):
        sc.open_catalog()(store_root=str(tmp_path))["an274424"].read()


# --------------------------------------------------------------------------------------------
# building from stores
# --------------------------------------------------------------------------------------------


def test_build_catalog_pins_versions_and_reads_attrs(session_store, animal_store, store_writer, session_source,
                                                     tmp_path):  # fmt: skip
    root = Path(session_store[0]).parent
    store_writer(session_source(n_subvolumes=1, n_cells=3, n_trials=2), str(root / "an229717_2013_12_01.zarr"),
                 status="incomplete")  # fmt: skip
    out = tmp_path / "built.yaml"
    with pytest.warns(UserWarning, match="an229717_2013_12_01.zarr: skipped"):
        cat = sc.build_catalog(root, out=out, only_found=False)  # out lies in root: keep unscanned explicitly
    assert sorted(cat) == sorted(SESSIONS + ANIMALS)  # unscanned entries are kept
    session = cat.get_entity("an197522_2013_03_08").metadata
    assert session["content_version"] == content_version(session_store[0]) == session_store[1].attrs["content_version"]
    assert session["metadata_from"] == "store attrs" and session["session_date"] == "2013-03-08"
    animal = cat.get_entity("an274424").metadata
    assert animal["ablations"] == ["touch"] and animal["conditions"] == ["pre", "post_touch"]
    assert cat.get_entity("an229717_2013_12_01").metadata["content_version"] is None
    assert cat.get_entity("an250220").metadata["content_version"] is None
    assert sc.catalog_dict(sc.open_catalog(out)) == sc.catalog_dict(cat)

    reread = sc.open_catalog(out)(store_root=str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreVersionWarning)
        reread["an197522_2013_03_08"].read()
    group = zarr.open_group(session_store[0], mode="r+")
    group.attrs["metadata"] = {"changed": True}
    zarr.consolidate_metadata(session_store[0])
    with pytest.warns(StoreVersionWarning) as record:
        reread["an197522_2013_03_08"].read()
    assert any("was pinned" in str(w.message) for w in record)
    with pytest.warns(StoreVersionWarning, match=r"an197522_2013_03_08\.zarr: the content_version it records "
                      r"\(\w{16}\) is not the version of its metadata today \(\w{16}\).*the catalog pins"):
        rebuilt = sc.build_catalog(root, only_found=False)
    assert rebuilt.get_entity("an197522_2013_03_08").metadata["content_version"] == content_version(session_store[0])


def test_build_catalog_over_s3_keeps_secrets_out(moto_server, moto_session_store, tmp_path):
    url, source = moto_session_store
    root = url.rsplit("/", 1)[0]
    out = tmp_path / "s3.yaml"
    cat = sc.build_catalog(root, storage_options=moto_server.storage_options(), out=out)
    text = out.read_text()
    creds = (moto_server.credentials.secret, moto_server.credentials.key)
    assert not any(c in text or c in repr(cat) for c in creds)  # (never print a secret)
    assert cat.get_entity("an197522_2013_03_08").metadata["content_version"] == source.attrs["content_version"]
    reader = sc.open_catalog(out)(store_root=root, endpoint_url=moto_server.endpoint_url)["an197522_2013_03_08"]
    tree = reader.read(groups=["trials"])  # anonymous: anon defaults to true
    xr.testing.assert_equal(tree["trials"].to_dataset().compute(), source["trials"].to_dataset())
