# Calibration: per served model (each CNN, the LightGBM baseline, the fusion), a temperature
# fitted on its out-of-fold predictions and scored on the holdout, written beside the model as
# calibration.json, which `sts predict` applies; plus the holdout's calibrated predictions and
# reliability diagram.


include: "calibration_common.smk"


wildcard_constraints:
    model_dir="|".join(CALIBRATION_DIRS) or "$^",


localrules:
    calibrate,


rule calibrate:
    input:
        unpack(calibration_inputs),
    output:
        calibration="{model_dir}/calibration.json",
        predictions="{model_dir}/predictions_calibrated.csv",
        figure=report(
            "{model_dir}/reliability.png",
            caption="../report/reliability.rst",
            category="Calibration",
            subcategory="{model_dir}",
            labels={"figure": "reliability diagram"},
        ),
    log:
        "logs/calibrate/{model_dir}.log",
    conda:
        "../envs/baseline.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        title=calibration_title,
    script:
        "../scripts/calibrate.py"
