"""mfg_study: the study runner around ``mfg_core`` -- stores, provenance, job helpers, tables, report.

Used by the Snakemake workflow (``workflow/scripts/``) and by notebooks that read a study's outputs.
The solver core never imports this package.

* :mod:`mfg_study.io` -- zarr stores, JSON-clean attributes, atomic writes;
* :mod:`mfg_study.provenance` -- what every store records about how it was made;
* :mod:`mfg_study.jobs` -- a job's log and the one thread policy;
* :mod:`mfg_study.tables` -- the comparison tables of a study's runs;
* :mod:`mfg_study.seed` -- the seed report's findings beside the measurements;
* :mod:`mfg_study.report` -- figures and the self-contained HTML report;
* :mod:`mfg_study.comparison` -- coupling methods side by side in one process.
"""
