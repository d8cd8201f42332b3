#!/usr/bin/env bash
# Create the separate virtual environment holding the spiking-network
# libraries that bench_lif.py times beside this package's LIF layer:
# snnTorch 1.0.0, SpikingJelly 2.0.0 and Norse 1.1.0 (PyTorch), and Spyx 1.0.0
# (JAX, Flax NNX).  They run in their own environment, as their users run them,
# through benchmarks/_lif_libraries.py.
#
# Usage: benchmarks/make_lif_env.sh [DIR] [PYTHON]
#   DIR     target directory (default: .bench-lif at the repository root)
#   PYTHON  interpreter used to create it (default: python3; SpikingJelly
#           2.0 and Spyx 1.0 need Python >= 3.11)
#
# torch is pinned to the CPU-sized 2.13.0 wheel in every pip line; an unpinned
# torch pulls a multi-GB CUDA build.  The PyTorch libraries are installed with
# --no-deps: SpikingJelly declares torchvision, torchaudio and tensorboard and
# Norse declares torchvision, which would drag in other torch versions; what
# the neuron modules import is installed explicitly instead.
# A few minutes; about 1.7 GB on disk.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$repo_root/.bench-lif}"
python="${2:-python3}"

"$python" -m venv "$dir"
"$dir/bin/pip" install --upgrade pip
# Spyx 1.0.0 and its JAX stack (the versions pip resolves for it), with the
# common numerical packages
"$dir/bin/pip" install torch==2.13.0 numpy==2.4.6 scipy==1.17.1 \
    jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 optax==0.2.8 spyx==1.0.0 \
    loguru==0.7.3 nir==1.0.8
# the PyTorch libraries without their declared dependencies (see above)
"$dir/bin/pip" install --no-deps torch==2.13.0 snntorch==1.0.0 \
    spikingjelly==2.0.0 norse==1.1.0 nirtorch==2.6

echo "checking imports ..."
"$dir/bin/python" -I -c "
import torch, snntorch, norse, spikingjelly
from spikingjelly.activation_based import neuron
print('torch', torch.__version__, 'snntorch', snntorch.__version__,
      'norse', norse.__version__, 'spikingjelly 2.0.0:', neuron.LIFNode.__name__)"
"$dir/bin/python" -I -c "
import jax, jaxlib, flax, spyx, spyx.nn
print('spyx', spyx.__version__, 'jax', jax.__version__, 'jaxlib',
      jaxlib.__version__, 'flax', flax.__version__)"
du -sh "$dir"
echo "LIF library environment ready: $dir"
