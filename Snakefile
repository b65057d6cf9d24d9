# mfg-study: one study = config/config.yaml (or --configfile config/studies/<name>.yaml).
#
#   snakemake --cores 8                       # the default study -> results/default/report.html
#   snakemake --cores 8 --configfile config/studies/large.yaml
#   snakemake --report results/default/snakemake-report.html   # Snakemake's own report
#
# Stages (one rules file each): setup (problem stores) -> solve (one job per problem x fp x backend,
# its couplings in one process) -> mass_conservation, compare_coupling, compare_backends, fields;
# the study kinds (studies.smk: convergence, sweep, scaling) -> report.

from snakemake.utils import min_version

min_version("9.0")


# A study given with --configfile stands on its own: keys it leaves out take the schema's defaults.
# (Snakemake would otherwise merge it key by key into the default study, so the default study's
# problems would silently join every other study.)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/setup.smk"
include: "workflow/rules/solve.smk"
include: "workflow/rules/mass_conservation.smk"
include: "workflow/rules/compare_coupling.smk"
include: "workflow/rules/compare_backends.smk"
include: "workflow/rules/fields.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    input:
        report_inputs(),
    default_target: True
