"""The package layout, the one part of the build that pyproject.toml cannot express.

The YAML configs live in the repository's top-level ``configs/``: users read and edit
them there, and training, evaluation and the docs name them by that path. An installed
package needs the model and encoder presets as well, so the folder is mapped onto the
package ``dvc_edic.configs``: a wheel carries it as ``dvc_edic/configs/``, from the one
copy in the repository. ``dvc_edic.config`` looks there first and falls back to the
checkout's folder (docs/architecture.md, "Configs in a checkout and in a wheel").
Everything else about the project is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

CONFIG_DIR = "configs"
CONFIG_PACKAGE = "dvc_edic.configs"

config_packages = [CONFIG_PACKAGE] + [
    f"{CONFIG_PACKAGE}.{sub}" for sub in find_namespace_packages(where=CONFIG_DIR)
]

setup(
    packages=[
        *find_namespace_packages(include=["dvc_edic*", "flows*", "eval*"],
                                 exclude=["eval.results*"]),  # outputs, not code
        *config_packages,
    ],
    package_dir={CONFIG_PACKAGE: CONFIG_DIR},
    package_data={
        "dvc_edic.weights": ["*.safetensors", "*.md"],
        **{package: ["*.yaml"] for package in config_packages},
    },
)
