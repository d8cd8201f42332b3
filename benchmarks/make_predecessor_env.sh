#!/usr/bin/env bash
# Create the separate virtual environment holding the predecessor packages
# (keras-spiking 0.3.0 on tf-keras, pytorch-spiking 0.1.0) that bench_layers.py
# and bench_fit.py time beside this package.  Their import name
# ``keras_spiking`` clashes with this repository's, so they cannot share its
# environment.
#
# Usage: benchmarks/make_predecessor_env.sh [DIR] [PYTHON]
#   DIR     target directory (default: .bench-predecessors at the repository root)
#   PYTHON  interpreter used to create it (default: python3)
#
# torch is pinned to the CPU-sized 2.13.0 wheel; an unpinned torch pulls a
# multi-GB CUDA build.  The predecessors are installed with --no-deps so that
# they do not drag in other TensorFlow/torch versions.
# A few minutes; about 2.5 GB on disk.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$repo_root/.bench-predecessors}"
python="${2:-python3}"

"$python" -m venv "$dir"
"$dir/bin/pip" install --upgrade pip
"$dir/bin/pip" install tensorflow-cpu==2.21.0 torch==2.13.0 numpy
# tf-keras without its dependencies: it asks for "tensorflow", which would
# install the full TensorFlow wheel over tensorflow-cpu (same version)
"$dir/bin/pip" install --no-deps tf-keras==2.21.0 keras-spiking==0.3.0 pytorch-spiking==0.1.0

# -I: not the keras_spiking of the current directory (this repository)
echo "checking imports ..."
TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 "$dir/bin/python" -I -c \
    "import keras_spiking, tensorflow as tf, tf_keras; print('keras-spiking', keras_spiking.__version__, 'tensorflow', tf.__version__, 'tf-keras', tf_keras.__version__, tf.keras.Model.__module__)"
"$dir/bin/python" -I -c \
    "import pytorch_spiking, torch; print('pytorch-spiking', pytorch_spiking.__version__, 'torch', torch.__version__)"
echo "predecessor environment ready: $dir"
