"""docs/API.md and the README's API table are written from the protos by
scripts/gen_api_docs.py: committed copies must be exactly what it writes now."""

import importlib.util
import sys

import pytest

from veritas_grpc.config import PROJECT_ROOT
from veritas_grpc.security import policy

STALE = "is stale: run `make proto` (scripts/gen_api_docs.py writes it from protos/)"


def _load_generator():
    path = PROJECT_ROOT / "scripts" / "gen_api_docs.py"
    spec = importlib.util.spec_from_file_location("gen_api_docs", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


generator = _load_generator()


@pytest.fixture(scope="module")
def api():
    return generator.read_api(generator.compile_descriptor_set())


def test_docs_api_md_is_what_the_generator_writes(api):
    assert generator.API_DOC.read_text() == generator.render_api_doc(api), f"docs/API.md {STALE}"


def test_the_readme_table_is_what_the_generator_writes(api):
    readme = generator.README.read_text()
    fresh = generator.replace_table(readme, generator.render_readme_table(api))
    assert readme == fresh, f"the API table in README.md {STALE}"


def test_the_output_is_deterministic(api):
    again = generator.read_api(generator.compile_descriptor_set())
    assert generator.render_api_doc(api) == generator.render_api_doc(again)


def test_every_rpc_is_documented_with_its_access(api):
    doc = generator.render_api_doc(api)
    for service in policy.veritas_services():
        for method in service.methods:
            assert f'<a id="{generator._anchor(method.full_name)}"></a>' in doc, method.full_name
    login = next(m for s in api.services for m in s.methods if m.name == "Login")
    assert login.who == "public" and "UNAUTHENTICATED" in login.status_codes


def test_request_and_response_types_are_documented_once_each(api):
    doc = generator.render_api_doc(api)
    messages, enums = generator.documented_types(api)
    used = {t for s in api.services for m in s.methods for t in (m.input_type, m.output_type)}
    assert used <= {m.full_name for m in messages}
    for each in [*messages, *enums]:
        assert doc.count(f'<a id="{generator._anchor(each.full_name)}"></a>') == 1, each.full_name


def test_field_behaviour_comes_from_the_annotation(api):
    register = api.messages[".veritas.v1.RegisterRequest"]
    email = next(f for f in register.fields if f.name == "email")
    assert "REQUIRED" in email.behaviour


def test_indented_comment_lines_become_a_text_block():
    rendered = generator._markdown("Score:\n\n  a = b + c\n  d = e\nDone.")
    assert rendered == ["Score:", "", "```text", "  a = b + c", "  d = e", "```", "Done.", ""]


def test_indented_lines_under_a_list_item_continue_it():
    rendered = generator._markdown("- one\n  more\n- two")
    assert rendered == ["- one", "  more", "- two", ""]
