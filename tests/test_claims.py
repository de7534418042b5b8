"""`harness claims`: the registered claims, their verdict rule, bad input, a claim run end to end and its dashboard page."""
from pathlib import Path

import pytest

from conftest import harness_main, run_harness
from harness.claims import CLAIMS, INCONCLUSIVE, OPPOSITE, REPRODUCED
from harness.claims.runner import overall, verdict

APP = str(Path(__file__).parents[1] / "dashboards" / "app.py")


def test_claims_list_names_every_paper_with_its_figures(harness_home):
    result = harness_main(["claims", "list"], harness_home)
    assert result.returncode == 0, result.stderr
    for name in ("hair", "hyperres", "ads", "daair"):
        assert f"\n{name}: " in f"\n{result.stdout}"
    assert "paper +2.770 dB (Tab. 2 / Tab. 4 average: Restormer+HAIR 30.37, Restormer 27.60)" in result.stdout
    assert "paper +0.009 dB" in result.stdout and "paper 1.77%" in result.stdout
    assert not (harness_home / "mlflow.db").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["claims", "run", "hiar"], "unknown claim 'hiar'. Did you mean 'hair'?"),
        (["claims", "run", "hair", "--budget", "huge"], "unknown budget 'huge'."),
        (["claims", "run", "hair", "--seeds", "0"], "--seeds expects a positive number of seeds, got 0"),
        (["claims", "run", "hair", "--seeds", "two"], "--seeds expects a positive number of seeds, got 'two'"),
    ],
)
def test_bad_claim_input_is_one_line_and_exit_2(args, expected, harness_home):
    result = harness_main(args, harness_home)
    assert result.returncode == 2 and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (harness_home / "mlflow.db").exists()


def test_verdict_needs_every_interval_clear_of_zero_and_compares_the_sign_with_the_paper():
    assert verdict(+1.0, (0.2, 0.5), (0.1, 0.9)) == REPRODUCED
    assert verdict(+1.0, (-0.5, -0.2), (-0.9, -0.1)) == OPPOSITE
    assert verdict(+1.0, (0.2, 0.5), (-0.1, 0.9)) == INCONCLUSIVE  # the seeds' interval includes 0
    assert verdict(+1.0, (0.2, 0.5), None) == REPRODUCED  # one seed: test images only
    assert verdict(-0.3, (0.2, 0.5), None) == OPPOSITE
    assert overall([REPRODUCED, INCONCLUSIVE]) == INCONCLUSIVE and overall([REPRODUCED, OPPOSITE]) == OPPOSITE
    assert overall([REPRODUCED, REPRODUCED]) == REPRODUCED


def test_every_claim_cites_its_paper_file_and_trains_registered_models():
    from harness.settings import get_setting
    from zoo import MODELS

    for name in CLAIMS:
        claim = CLAIMS.get(name)
        assert "../shared/seeds/00" in claim.citation and claim.comparisons
        for entry in claim.entries():
            MODELS.get(entry.model)
            get_setting(entry.setting)
        for comparison in claim.comparisons:
            tasks = get_setting(comparison.first[0].setting).task_names
            assert set(comparison.tasks) <= set(tasks)


@pytest.mark.slow
def test_a_claim_runs_end_to_end_at_smoke_budget_and_the_dashboard_shows_it(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from streamlit.testing.v1 import AppTest

    result = run_harness(["claims", "run", "daair", "--budget", "smoke", "--seeds", "1"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.index("Expected wall time") < out.index("MLflow claim run")  # the plan comes before anything starts
    assert "DaAIR - PromptIR, three_deg: paper +0.450 dB" in out and "DaAIR / PromptIR MACs" in out
    verdict_line = out.strip().splitlines()[-1]
    assert verdict_line in (f"Verdict: {v}" for v in (REPRODUCED, OPPOSITE, INCONCLUSIVE))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("restoration-bench/claims").experiment_id])
    assert parent.info.status == "FINISHED" and parent.data.tags["verdict"] == verdict_line[len("Verdict: "):]
    trained = client.search_runs([client.get_experiment_by_name("restoration-bench/three_deg").experiment_id],
                                 filter_string=f"tags.claim_parent = '{parent.info.run_id}'")
    assert sorted(r.data.tags["model"] for r in trained) == ["daair", "promptir"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    at = AppTest.from_file(APP, default_timeout=240)
    at.session_state["setting"] = "three_deg"
    at.run()
    at.switch_page("views/claims.py").run()
    assert not at.exception, [e.value for e in at.exception]
    (rows,) = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert list(rows["claim"]) == ["daair"] and rows["seeds CI"].iloc[0] == "one seed"
    assert rows["verdict"].iloc[0] == parent.data.tags["comparison0.verdict"]


def _trained_under(client, parent: str) -> list:
    """Every run (any experiment) a claim run started: tag claim_parent = its id."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.claim_parent = '{parent}'")


@pytest.mark.slow
# hair runs through the same "seeds" runner as daair above (eight models instead of two, about 150 s
# more of the same machinery), so its end-to-end run is left to `harness claims run hair`
@pytest.mark.parametrize("name, models", [
    ("hyperres", ["hyperres"] * 5),  # the "seeds" runner with dedicated-level entries
    ("ads", ["nafnet_ads"] * 4),  # the pipelines' parents: FAIG-SD whole, three selections reusing its stages
])
def test_the_hyperres_and_ads_claims_run_end_to_end_at_smoke_budget(name, models, tmp_path):
    from mlflow.tracking import MlflowClient

    from harness.claims import CLAIMS

    result = run_harness(["claims", "run", name, "--budget", "smoke", "--seeds", "1"], tmp_path, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.index("Expected wall time") < out.index("MLflow claim run")
    claim = CLAIMS.get(name)
    for comparison in claim.comparisons:
        assert f"{comparison.label}: paper {comparison.paper:+.3f} dB" in out
    verdict_line = out.strip().splitlines()[-1]
    assert verdict_line in (f"Verdict: {v}" for v in (REPRODUCED, OPPOSITE, INCONCLUSIVE))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = client.search_runs([client.get_experiment_by_name("restoration-bench/claims").experiment_id])
    assert parent.info.status == "FINISHED" and parent.data.tags["verdict"] == verdict_line[len("Verdict: "):]
    assert all(f"comparison{i}.verdict" in parent.data.tags for i in range(len(claim.comparisons)))
    trained = _trained_under(client, parent.info.run_id)
    assert sorted(r.data.tags["model"] for r in trained) == models
    assert all(r.info.status == "FINISHED" for r in trained)
    if name == "ads":  # the other selections trained their own masks and ADS, on FAIG-SD's unified model and classifier
        (whole,) = [r for r in trained if "ads_reuse.unified" not in r.data.tags]
        others = [r for r in trained if r is not whole]
        assert {r.data.tags["ads_selection"] for r in others} == {"random", "encoder", "weight_diff"}
        assert {r.data.tags["ads_reuse.unified"] for r in others} == {whole.data.tags["ads_stage_run.unified"]}
        assert {r.data.tags["ads_reuse.classifier"] for r in others} == {whole.data.tags["ads_stage_run.classifier"]}
