"""The contract as producer and consumer teams see it: checked-in JSON Schemas and output records."""
import json
from pathlib import Path

import orjson
import pytest

from models.outputs import Alert, ChargeLine, DeadLetter
from models.schema import schemas
from simulator import simulate
from cli.batch import run_batch

SCHEMAS = Path(__file__).parent.parent / "schemas"
OUTPUT_MODELS = {"charge": ChargeLine, "alert": Alert, "dead_letter": DeadLetter}


@pytest.mark.parametrize("name", sorted(schemas()))
def test_checked_in_schema_matches_the_models(name):
    """Regenerate with `infusion-validator schema --out schemas` when the models change."""
    assert json.loads((SCHEMAS / name).read_text()) == schemas()[name]


def test_every_output_record_of_a_simulated_day_fits_the_output_schema():
    import io

    out = io.BytesIO()
    lines = (line.encode() for line in simulate(encounters=400, seed=3, bad_line_rate=0.02))
    run_batch(lines, out)
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert {r["kind"] for r in records} == set(OUTPUT_MODELS)
    for record in records:
        model = OUTPUT_MODELS[record["kind"]]
        assert model.model_validate(record).model_dump(exclude_unset=True) == record
