#!/usr/bin/env bash
# mmrec-train end to end: a run killed with SIGKILL and resumed from its last
# checkpoint logs bit-identical losses to an uninterrupted run; SIGINT writes
# a checkpoint and exits cleanly; a corrupt checkpoint is a clear error.
#   bash tests/train_resume.sh build/tools/mmrec-train
set -uo pipefail
train=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export OMP_WAIT_POLICY=PASSIVE
failures=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }

cat > cfg.json <<'JSON'
{
  "model": {"dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64, "mdi_dim": 8,
            "memory_slots": 4, "hds_levels": 2, "chunk_size": 16},
  "data": {"source": "synthetic", "synthetic_bytes": 65536},
  "train": {"steps": 160, "batch_size": 4, "seq_len": 48, "lr": 3e-3, "grad_accum": 2},
  "schedule": {"warmup_steps": 5, "min_lr": 3e-4,
               "plateau": {"patience": 0, "factor": 0.5, "threshold": 0.2}},
  "checkpoint": {"interval": 20, "keep": 2},
  "log": {"interval": 1, "eval_interval": 20, "eval_batches": 2, "progress": "lines"}
}
JSON
losses() { grep -o '"loss":[^,]*,.*"step":[0-9]*' "$1/metrics.jsonl" | sed 's/"lr":.*"step"/"step"/'; }

# Reference: uninterrupted.
"$train" cfg.json --run-dir A > A.log 2>&1 || { cat A.log; bad "reference run failed"; exit 1; }

# SIGKILL shortly after the checkpoint of step 40, then --resume.
"$train" cfg.json --run-dir B > B.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -d B/checkpoints/step-00000040 ] && break; sleep 0.05; done
# A few steps past it (not a fixed sleep: a fast step would finish the run).
for _ in $(seq 1 3000); do grep -q '"step":45[,}]' B/metrics.jsonl 2>/dev/null && break; sleep 0.01; done
kill -9 $pid
wait $pid
status=$?
[ $status -eq 137 ] && ok "killed with SIGKILL" || bad "run B was not killed by SIGKILL (status $status)"
last=$(ls B/checkpoints | grep -E "^step-[0-9]+$" | tail -1)  # not a half-written step-N.tmp-PID
[ "$last" != step-00000160 ] || bad "run B finished before the kill"
"$train" cfg.json --run-dir B --resume > B2.log 2>&1 || { cat B2.log; bad "resume failed"; }
grep -q "resumed from .*$last" B2.log && ok "resumed from $last" || bad "no resume message"
if diff <(losses A) <(losses B) > /dev/null && [ "$(losses A | wc -l)" -eq 160 ]; then
  ok "160 losses bit-identical after SIGKILL + --resume"
else
  bad "losses differ after resume"; diff <(losses A) <(losses B) | head -5
fi
cmp -s A/model.safetensors B/model.safetensors && ok "final weights identical" || bad "final weights differ"

# SIGINT: checkpoint and a clean exit.
"$train" cfg.json --run-dir C > C.log 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -d C/checkpoints/step-00000020 ] && break; sleep 0.05; done
kill -INT $pid
wait $pid
status=$?
if [ $status -eq 0 ] && grep -q "^interrupted at step" C.log; then ok "SIGINT: clean exit"; else bad "SIGINT: status $status"; cat C.log; fi
step=$(sed -n 's/^interrupted at step \([0-9]*\).*/\1/p' C.log)
[ -n "$step" ] && [ -d "C/checkpoints/$(printf 'step-%08d' "$step")" ] && ok "SIGINT wrote the checkpoint of step $step" \
  || bad "no checkpoint for the interrupted step"

# Without --resume a run directory holding checkpoints is refused.
"$train" cfg.json --run-dir C > C2.log 2>&1 && bad "reused a run dir silently" \
  || { grep -q "already holds checkpoints" C2.log && ok "refuses to overwrite: $(tail -1 C2.log)"; }

# A corrupt newest checkpoint: --strict-resume stops and names the intact one;
# --resume falls back to it and says so; never a silent restart.
newest=$(ls -d C/checkpoints/step-* | tail -1)
intact=$(ls -d C/checkpoints/step-* | tail -2 | head -1)
printf '\x42' | dd of="$newest/train_state.bin" bs=1 seek=200 conv=notrunc status=none
"$train" cfg.json --run-dir C --strict-resume > C3.log 2>&1 && bad "strict resume from a corrupt checkpoint" \
  || { grep -q "corrupt (checksum mismatch).*newest intact one is $intact" C3.log && ok "strict: $(tail -1 C3.log)" \
       || { bad "unclear strict error"; cat C3.log; }; }
"$train" cfg.json --run-dir C --resume > C4.log 2>&1 || { bad "no fallback from a corrupt checkpoint"; cat C4.log; }
grep -q "skipping damaged checkpoint $newest: .*corrupt (checksum mismatch)" C4.log && grep -q "resumed from $intact" C4.log \
  && ok "fallback: $(grep -m1 skipping C4.log)" || { bad "fallback not reported"; cat C4.log; }
rm -rf D && mkdir -p D && cp -r A/checkpoints D/ && cp A/tokens-*.bin D/
m=$(ls -d D/checkpoints/step-* | tail -1)/model.safetensors
printf '\x42' | dd of="$m" bs=1 seek=$(( $(stat -c %s "$m") - 10 )) conv=notrunc status=none
"$train" cfg.json --run-dir D --strict-resume > D0.log 2>&1 && bad "strict resume from corrupt weights" \
  || { grep -q "model.safetensors: corrupt (its hash does not match" D0.log && ok "corrupt weights: $(tail -1 D0.log)" \
       || { bad "unclear error"; cat D0.log; }; }
for c in D/checkpoints/step-*/train_state.bin; do printf '\x42' | dd of="$c" bs=1 seek=100 conv=notrunc status=none; done
"$train" cfg.json --run-dir D --resume > D.log 2>&1 && bad "resumed with no intact checkpoint" \
  || { grep -q "no intact checkpoint to resume from" D.log && ok "none intact: $(tail -1 D.log)" || { bad "unclear error"; cat D.log; }; }

# A checkpoint from another config is a clear mismatch error.
sed 's/"lr": 3e-3/"lr": 2e-3/' cfg.json > other.json
"$train" other.json --run-dir A --resume > E.log 2>&1 && bad "resumed with another lr" \
  || { grep -q "does not match the config: train.lr" E.log && ok "mismatch: $(tail -1 E.log)" || { bad "unclear"; cat E.log; }; }

# QAT: a run that turns fake quantization on at step 20 and freezes its
# observers at step 45 equals an f32 run of 20 steps resumed with the qat
# section, and a resume in the middle of QAT (observer state restored).
python3 - <<'PY'
import json
c = json.load(open("cfg.json"))
c["train"]["steps"] = 60
c["schedule"] = {"kind": "constant", "warmup_steps": 5}  # independent of train.steps
c["qat"] = {"start_step": 20, "freeze_observers_step": 45}
json.dump(c, open("qat.json", "w"))
c.pop("qat"); c["train"]["steps"] = 20
json.dump(c, open("f32.json", "w"))
PY
"$train" qat.json --run-dir QA > QA.log 2>&1 || { cat QA.log; bad "QAT run failed"; }
[ -f QA/model.int8.safetensors ] && ok "QAT run wrote model.int8.safetensors" || bad "no int8 model after QAT"
"$train" f32.json --run-dir QB > QB.log 2>&1 && "$train" qat.json --run-dir QB --resume > QB2.log 2>&1 \
  || { cat QB.log QB2.log; bad "f32 run + QAT resume failed"; }
if diff <(losses QA) <(losses QB) > /dev/null && [ "$(losses QA | wc -l)" -eq 60 ]; then
  ok "QAT from the resume of an f32 run: 60 losses bit-identical"
else
  bad "QAT after resume differs"; diff <(losses QA) <(losses QB) | head -5
fi
rm -rf QC && mkdir -p QC/checkpoints && cp -r QA/checkpoints/step-00000040 QC/checkpoints/ && cp QA/tokens-*.bin QC/
"$train" qat.json --run-dir QC --resume > QC.log 2>&1 || { cat QC.log; bad "mid-QAT resume failed"; }
cmp -s QA/model.int8.safetensors QC/model.int8.safetensors && diff <(losses QA | tail -20) <(losses QC) > /dev/null \
  && ok "resume in the middle of QAT: losses and int8 model bit-identical" || bad "mid-QAT resume differs"

[ $failures -eq 0 ] && echo "train_resume: all passed" || echo "train_resume: $failures failed"
exit $failures
