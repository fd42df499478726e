# Sourced by the scripts that run on the lent GPU machine (whole_device.sh, presence_gpu.sh): PyAV
# from the carried wheel (.whl/, the image has none), bytecode written once and kept (the image
# sets PYTHONDONTWRITEBYTECODE, which made every process compile torch again), and the machine
# named in the log.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 1
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pyc
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
nproc
