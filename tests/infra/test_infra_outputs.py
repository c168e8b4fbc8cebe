"""Issue 16 item 7: the stack's outputs are named once, in infra/outputs.py, and read by name."""

from __future__ import annotations

import ast
from pathlib import Path

from infra import outputs
from infra.constructs.service_functions import FUNCTION_SPECS

REPO = Path(__file__).resolve().parents[2]
NAMES = {value for key, value in vars(outputs).items()
         if key.isupper() and isinstance(value, str) and key != "FUNCTION_NAME_SUFFIX"}  # fmt: skip
# Where the outputs are read (infra/ makes them: its construct ids, such as the API key's
# "AdminApiKey", may coincide with an output's name).
READERS = ("localcloud/valerix_localcloud", "scripts", "tests")


def test_every_output_of_either_target_is_a_named_constant(any_synth):
    made = set(any_synth.template_dict["Outputs"])
    assert made <= NAMES, f"outputs without a constant in infra/outputs.py: {sorted(made - NAMES)}"


def test_every_function_has_its_output_and_each_ends_with_the_suffix(local_synth):
    functions = set(FUNCTION_SPECS) | {"Backup", "BackupSync", "BackupRestore"}
    assert set(outputs.FUNCTION_NAME_OUTPUTS) == functions
    for output in outputs.FUNCTION_NAME_OUTPUTS.values():
        assert output.endswith(outputs.FUNCTION_NAME_SUFFIX) and output in local_synth.template_dict["Outputs"]


def test_no_reader_spells_an_output_name_itself():
    """A literal "ApiUrl" in a reader would survive a rename of the output and fail at run time."""
    spelled = []
    for folder in READERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in NAMES:
                    spelled.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert not spelled, "use the constants of infra/outputs.py:\n" + "\n".join(spelled)
