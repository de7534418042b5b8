"""The harness: settings, data, scoring, runs and the command line, in the order a run goes through them.

    settings/  what a benchmark is: settings (YAML) and metric protocols      imports: zoo.registry
    data/      degradations, the embedded suite, real-data layouts             imports: settings
    scoring/   metrics, SSIM kernel, scorers, weights, efficiency, evaluation  imports: settings, data, zoo
    runs/      configs, profiles, training, trials, submit/sweep, tracking     imports: the above, Ray, MLflow
    ads/       ADS' four-stage pipeline on top of runs/                        imports: the above
    cli/       one module per `harness` command                               imports: everything
    public.py  the one surface leaderboards/ and dashboards/ may import

No package imports one listed below it.
"""
