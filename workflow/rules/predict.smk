# Classify a folder of new recordings (config predict.inputs) with a trained CNN, the LightGBM
# baseline or the fusion: each file is prepared from the parameters saved in the model, one CSV
# row per file (+ one figure per cell); calibrated by the model's calibration.json.


include: "predict_common.smk"


rule predict:
    input:
        model=predict_model(),
        calibration=predict_calibration(),
        recordings=predict_inputs(),
    output:
        csv=f"results/predictions/{predict_name()}.csv",
        figures=(
            directory(f"results/predictions/{predict_name()}_figures")
            if PREDICT["figures"]
            else []
        ),
    log:
        f"logs/predict/{predict_name()}.log",
    conda:
        "../envs/cnn.yaml"
    threads: CNN["threads"] if CNN else default(CnnJobSettings, "threads")
    resources:
        mem_mb=CNN["mem_mb"] if CNN else default(CnnJobSettings, "mem_mb"),
        runtime=120,
    params:
        figures=lambda wildcards, output: (
            f"--figures '{output.figures}'" if PREDICT["figures"] else ""
        ),
        device=CNN["device"] if CNN else default(TuneSettings, "device"),
    shell:
        "sts predict --model {input.model:q} --out {output.csv:q} {params.figures} "
        "--device {params.device} --threads {threads} {input.recordings:q} 2> {log}"
