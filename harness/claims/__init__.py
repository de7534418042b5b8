"""Each seed paper's headline relative claim as a registered experiment: data plus a small runner.

A claim names what to train (entries: a model on a setting, trained once per seed), which
differences to compare (first minus second, in average PSNR over the listed tasks) and the paper's
figure for each, with its citation (../shared/seeds/). `harness claims run NAME` trains everything
through the harness' own machinery (harness/claims/runner.py) and gives each comparison a verdict:
"reproduced in direction", "opposite", or "inconclusive at this budget" (its seed interval includes 0).
This module holds data only; it imports neither torch, Ray nor MLflow (`harness claims list` stays fast).
"""
from __future__ import annotations

from dataclasses import dataclass

from zoo.registry import Registry

REPRODUCED, OPPOSITE, INCONCLUSIVE = "reproduced in direction", "opposite", "inconclusive at this budget"
CLAIM_EXPERIMENT = "claims"  # claim runs live in the MLflow experiment restoration-bench/claims
CLAIM_ROLE = "claim"  # the `role` tag of a claim's parent run


@dataclass(frozen=True)
class Entry:
    """One configuration a claim trains once per seed (a dedicated one-level model when `train_level` is set)."""

    model: str
    setting: str
    blind: bool = False
    train_level: float | None = None
    options: tuple[tuple[str, str], ...] = ()  # model options (`--option key=value`), e.g. (("selection", "random"),)

    def label(self) -> str:
        """A short name: model, options, setting, and the blind/dedicated marks."""
        mark = " blind" if self.blind else "" if self.train_level is None else f" level {self.train_level:g}"
        options = "".join(f" {k}={v}" for k, v in self.options)
        return f"{self.model}{options}{mark} on {self.setting}"


@dataclass(frozen=True)
class Comparison:
    """First minus second in average PSNR (dB) over `tasks` (all of the setting's when empty), beside the paper's.

    Several entries on one side are merged task by task (dedicated per-level models: each scores its own level).
    """

    label: str
    first: tuple[Entry, ...]
    second: tuple[Entry, ...]
    paper: float  # the paper's first minus second, dB
    source: str  # where in the paper
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Figure:
    """An absolute figure shown beside the paper's (no verdict): mean over seeds of `metric` of `entry`."""

    label: str
    entry: Entry
    metric: str  # an MLflow metric of the entry's runs, e.g. level_error/avg
    paper: float
    scale: float  # ours is multiplied by this before it is shown (e.g. 100 for a percentage)
    unit: str
    source: str


@dataclass(frozen=True)
class MacsCheck:
    """First's MACs against second's at the harness' efficiency input (128 x 128), beside the paper's statement."""

    label: str
    first: str  # model names (the tiny variant trained here, and the paper variant the paper measured)
    second: str
    setting: str
    paper: str
    source: str


@dataclass(frozen=True)
class Claim:
    """A seed paper's headline relative claim: citation, statement, and what reproduces it."""

    name: str
    paper: str
    citation: str
    statement: str
    comparisons: tuple[Comparison, ...]
    figures: tuple[Figure, ...] = ()
    macs: tuple[MacsCheck, ...] = ()
    runner: str = "seeds"  # a name in harness/claims/runner.py RUNNERS

    def entries(self) -> list[Entry]:
        """Every distinct entry the claim trains, in order."""
        found = [e for c in self.comparisons for e in (*c.first, *c.second)] + [f.entry for f in self.figures]
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Budget:
    """How long each of a claim's trainings runs: a training profile and its number of steps."""

    name: str
    profile: str
    steps: int
    description: str


BUDGETS: Registry[Budget] = Registry("budget")
for _budget in (
    Budget("smoke", "smoke", 2, "two steps: checks that the machinery runs (tests); verdicts mean nothing"),
    Budget("tiny", "smoke", 100, "100 steps of batch 4 at 48 px: minutes per model on a 2-core machine"),
    Budget("small", "default", 600, "the default profile (600 steps, batch 8 at 64 px)"),
):
    BUDGETS.add(_budget.name, _budget)

CLAIMS: Registry[Claim] = Registry("claim")

HAIR = "Cao et al., HAIR: Hypernetworks-based All-in-One Image Restoration (../shared/seeds/000)"
CLAIMS.add("hair", Claim(
    "hair", "HAIR", HAIR,
    "HAIR improves its host: Res-HAIR beats Restormer on three and five degradations, and HAIR helps AirNet "
    "(Tab. 1, 2, 4) and NAFNet (Sec. 4.3: a plug-and-play module for any baseline)",
    (
        Comparison("Res-HAIR - Restormer, three_deg", (Entry("res_hair", "three_deg"),), (Entry("restormer", "three_deg"),),
                   32.70 - 31.68, "Tab. 1 average: Res-HAIR 32.70, Restormer 31.68"),
        Comparison("Res-HAIR - Restormer, five_deg", (Entry("res_hair", "five_deg"),), (Entry("restormer", "five_deg"),),
                   30.37 - 27.60, "Tab. 2 / Tab. 4 average: Restormer+HAIR 30.37, Restormer 27.60"),
        Comparison("AirNet+HAIR - AirNet, five_deg", (Entry("airnet_hair", "five_deg"),), (Entry("airnet", "five_deg"),),
                   26.27 - 25.49, "Tab. 4 average: AirNet+HAIR 26.27, AirNet 25.49"),
        # Tab. 4 has no NAFNet row; its Transweather row (+1.87 dB) is the paper's other non-Restormer host
        Comparison("NAFNet+HAIR - NAFNet, five_deg", (Entry("nafnet_hair", "five_deg"),), (Entry("nafnet", "five_deg"),),
                   27.09 - 25.22, "no NAFNet row; Tab. 4 Transweather+HAIR 27.09 vs Transweather 25.22 shown"),
    ),
))

HYPERRES = "Aharon & Ben-Artzi, HyperRes: Efficient Hypernetwork-Based Continuous Image Restoration (../shared/seeds/001)"
_LEVELS = (15.0, 50.0, 75.0)  # a subset of the trained range 15-75 (Sec. 4.1), to keep the dedicated models few
CLAIMS.add("hyperres", Claim(
    "hyperres", "HyperRes", HYPERRES,
    "One network for all noise levels stays within a small distance of dedicated per-level networks "
    "(Tab. 1 'Distance', 0.009 dB on average), and its blind level estimator errs by 1.77% (Fig. 6)",
    (
        Comparison("dedicated - single network, denoise sigma 15/50/75",
                   tuple(Entry("hyperres", "hyperres_denoise", train_level=level) for level in _LEVELS),
                   (Entry("hyperres", "hyperres_denoise"),), 0.009,
                   "Tab. 1 and Sec. 4.2: average PSNR distance 0.009 dB (all levels 5-90)",
                   tuple(f"sigma_{level:g}" for level in _LEVELS)),
    ),
    figures=(Figure("blind level estimator error", Entry("hyperres", "hyperres_denoise", blind=True),
                    "level_error/avg", 1.77, 100.0, "%", "Fig. 6: error rate 1.77%"),),
))

ADS = ("Park, Lee, Chun, All-in-one Image Restoration for Unknown Degradations Using Adaptive Discriminative "
       "Filters for Specific Degradations, CVPR 2023 (slides, ../shared/seeds/002)")
_ADS_FAIG = Entry("nafnet_ads", "rain_blur_noise")  # selection=faig, q=3 (zoo/ads.py defaults; slides, Step 2)


def _ads_selection(method: str, label: str, paper: float) -> Comparison:
    """FAIG-SD minus another filter-selection method, both CNN-ADS on the same unified model and classifier."""
    return Comparison(f"FAIG-SD - {label} selection, rain_blur_noise", (_ADS_FAIG,),
                      (Entry("nafnet_ads", "rain_blur_noise", options=(("selection", method),)),), paper,
                      f"slides, 'Comparison studies for selected filter locations', added 3% filters, MSBDN host "
                      f"(ours: NAFNet): Ours 30.58 vs {label} {30.58 - paper:.2f}")


CLAIMS.add("ads", Claim(
    "ads", "ADS", ADS,
    "CNN-ADS beats its unified model (slides, 'Comparisons among all-in-one on Rain-Blur-Noise': NAFNet UM 31.28 "
    "-> Ours 31.56), and FAIG-SD chooses better filters than random, encoder-only and |theta_um - theta_d| "
    "selection (slides, 'Comparison studies for selected filter locations', 3% filters: 30.58 against 29.98, "
    "30.17 and 30.28 dB)",
    (
        Comparison("NAFNet-ADS - unified NAFNet, rain_blur_noise", (_ADS_FAIG,),
                   (Entry("nafnet", "rain_blur_noise"),), 31.56 - 31.28,
                   "slides, Rain-Blur-Noise table: NAFNet Ours 31.56, NAFNet UM 31.28"),
        _ads_selection("random", "random", 30.58 - 29.98),
        _ads_selection("encoder", "encoder", 30.58 - 30.17),
        _ads_selection("weight_diff", "|theta|", 30.58 - 30.28),
    ),
    runner="ads",
))

DAAIR = "Zamfir et al., Efficient Degradation-aware Any Image Restoration (DaAIR) (../shared/seeds/003)"
CLAIMS.add("daair", Claim(
    "daair", "DaAIR", DAAIR,
    "DaAIR needs fewer MACs than PromptIR at comparable (here: higher) PSNR on three degradations "
    "(Tab. 1: 32.51 vs 32.06 dB with 6M vs 36M parameters; Tab. 5: GMACs and memory)",
    (
        Comparison("DaAIR - PromptIR, three_deg", (Entry("daair", "three_deg"),), (Entry("promptir", "three_deg"),),
                   32.51 - 32.06, "Tab. 1 average: DaAIR 32.51, PromptIR 32.06"),
    ),
    macs=(MacsCheck("DaAIR / PromptIR MACs", "daair", "promptir", "three_deg",
                    "fewer (Tab. 5; its GMACs figures are lost in the extracted text; 6M vs 36M parameters, Tab. 1)",
                    "Tab. 5 and Tab. 1"),),
))
