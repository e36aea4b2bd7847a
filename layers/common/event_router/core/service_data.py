"""botocore's data loader, without the scan that checks a service's name (imported by ``aws.py`` when a
function first calls AWS, with botocore itself).

Before botocore loads a service's model (and again before its endpoint rules) it lists every service
it has data for, only to check that the name is one of them: for each of some 420 directories a
listing, and for each API version in it a ``stat``: about 9 ms a time on the development machine,
and a container's first SQS client took 43 to 46 ms with it, 33 to 38 ms without (docs/benchmarks.md). A
pull request to botocore drops the scan upstream (boto/botocore#3687). Here the services are the
directories of the search paths, one listing each: a name that is none of them is still refused,
with botocore's own ``UnknownServiceError``.
"""

from __future__ import annotations

import os

from botocore.loaders import Loader, create_loader, instance_cache
from botocore.session import Session


class ServiceDirectoryLoader(Loader):
    """The services a search path holds are its directories: no look inside each."""

    @instance_cache
    def list_available_services(self, type_name: str) -> list[str]:
        services: set[str] = set()
        for path in self.search_paths:
            if os.path.isdir(path):
                with os.scandir(path) as entries:
                    services.update(entry.name for entry in entries if entry.is_dir())
        return sorted(services)


def install(session: Session) -> None:
    """Give ``session`` the loader above, with the search paths botocore's own would have had
    (``AWS_DATA_PATH``'s, then its own data), as botocore reads them."""
    paths = create_loader(session.get_config_variable("data_path")).search_paths
    session.register_component("data_loader", ServiceDirectoryLoader(paths, include_default_search_paths=False))
