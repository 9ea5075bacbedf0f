#!/bin/bash
# One recschedd on ncf/wnd/rmc1 (targets 40/80/80 ms, as the fleet measurement): its
# modelled capacity (GET /v1/capacity) at rest and after a load, against recsched-load's
# latency-bounded find-max through its own TCP port.
set -u
R=/work/main; D=/tmp/capm/run; rm -rf $D; mkdir -p $D/state
cat > $D/cfg.json <<J
{"listen": {"socket": "", "tcp": "127.0.0.1:18700"},
 "models": [{"spec": "$R/models/ncf.json", "sla_ms": 40}, {"spec": "$R/models/wnd.json", "sla_ms": 80},
            {"spec": "$R/models/rmc1.json", "sla_ms": 80}],
 "gpus": false, "profile": {"quick": true}, "state_dir": "$D/state"}
J
$R/build/daemon/recschedd --config $D/cfg.json 2> $D/log.txt &
P=$!
for i in $(seq 1 200); do curl -sf http://127.0.0.1:18700/v2/health/ready >/dev/null && break; sleep 0.2; done
curl -s http://127.0.0.1:18700/v1/capacity > $D/cap-rest.json
$R/build/bench/load/recsched-load --tcp 127.0.0.1:18700 --sizes lognormal:5.1,0.2,256 --find-max-qps \
  --start-qps 30 --growth 1.5 --tolerance 0.1 --step-duration 5 --step-warmup 1 --quiet --out $D/findmax.json
curl -s http://127.0.0.1:18700/v1/capacity > $D/cap-after.json
$R/build/bench/load/recsched-load --tcp 127.0.0.1:18700 --sizes lognormal:5.1,0.2,256 --find-max-qps \
  --start-qps 30 --growth 1.5 --tolerance 0.1 --step-duration 5 --step-warmup 1 --quiet --out $D/findmax2.json
curl -s http://127.0.0.1:18700/v1/capacity > $D/cap-after2.json
kill $P; wait $P
python3 - <<PY
import json
for f in ["cap-rest","cap-after","cap-after2"]:
    c=json.load(open("$D/"+f+".json")); h=c["host"]
    print(f, "mix_capacity", h["mix_capacity_qps"], "util", h["utilisation"], [(m["model"], m["capacity_qps"], m["items"]) for m in c["models"]])
for f in ["findmax","findmax2"]:
    r=json.load(open("$D/"+f+".json"))
    print(f, {k: r.get(k) for k in ("max_qps","lowest_fail_qps")})
PY
