#!/usr/bin/env bash
# Installs Keras 3 with the JAX CPU backend from PyPI into ~/.cache/sconce/pip/keras once and prints that
# directory (use it as PYTHONPATH with KERAS_BACKEND=jax). Used by the Keras import tests.
set -euo pipefail

cache="${SCONCE_CACHE:-$HOME/.cache/sconce}"
site="$cache/pip/keras"
python="${PYTHON:-python3}"
if ! PYTHONPATH="$site" KERAS_BACKEND=jax "$python" -c 'import keras, jax, h5py' >/dev/null 2>&1; then
  "$python" -m pip install --quiet --disable-pip-version-check --target "$site" keras "jax[cpu]" h5py >&2
fi
echo "$site"
