"""Every optional integration fails the same way without its extra: one line (MissingExtra, an
ImportError) naming the extra to install. Each case runs in a fresh interpreter where the
package cannot be imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("langchain_core", "import tokentrail; tokentrail.langchain_handler()", "tokentrail.langchain_handler()", "langchain-core", "langchain"),
    ("langchain_core", "import tokentrail; tokentrail.instrument_langchain()", "tokentrail.instrument_langchain()", "langchain-core", "langchain"),
    ("langchain_core", "import tokentrail.instrumentation.langchain", "tokentrail's LangChain instrumentation", "langchain-core", "langchain"),
    ("llama_index", "import tokentrail; tokentrail.instrument_llamaindex()", "tokentrail.instrument_llamaindex()", "llama-index-core", "llamaindex"),
    ("llama_index", "import tokentrail.instrumentation.llamaindex", "tokentrail's LlamaIndex instrumentation", "llama-index-core", "llamaindex"),
]

PROBE = """
import sys
sys.modules[{module!r}] = None  # as if not installed: importing it raises ModuleNotFoundError
try:
    {code}
except ImportError as e:
    import tokentrail
    print(type(e).__name__, isinstance(e, tokentrail.TokentrailError), e.name)
    print(e)
else:
    print("no error")
"""


@pytest.mark.parametrize(("module", "code", "what", "package", "extra"), CASES)
def test_missing_extra_is_one_line_naming_the_extra(module: str, code: str, what: str, package: str, extra: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module, code=code)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    kind, message = out.stdout.strip().split("\n")
    assert kind == f"MissingExtra True {module}"
    assert message == f"tokentrail: {what} needs {package}, which is not installed: pip install 'tokentrail[{extra}]'"


def test_other_import_errors_pass_through() -> None:
    from tokentrail import _internal

    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        with _internal.optional("x"):
            import no_such_module  # type: ignore[import-not-found]  # noqa: F401
