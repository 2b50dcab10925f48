import os, time, json
os.environ['OODBENCH_DATA_DIR']='/work/main/tests/fixtures/data'
os.environ['OODBENCH_CACHE_DIR']='/tmp/col2/cache'
from ood_bench.records import RunKey
from ood_bench.runner.spec import RunSpec
from ood_bench.runner.execute import execute
for seed in (0, 1, 2):
  for strat in ('scratch','lp','ft','mft'):
    t=time.time()
    p=execute(RunSpec(RunKey('qm9','toy-gap','0','dpa3',strat,seed,1.0,'gap'), preset='tiny', steps=1000, splits_dir='/tmp/col2/splits', results_dir='/tmp/col3/results'))
    r=json.load(open(p)); print(strat, seed, round(time.time()-t,1), r['training']['selected_step'], {k: round(v['rmse'],4) for k,v in r['metrics'].items()}, flush=True)
