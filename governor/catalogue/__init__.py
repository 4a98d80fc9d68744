"""Application sets: capture an installed application into an OCI image,
keep it in a catalogue with a proposed allocation and its hardware needs,
put applications into groups with classes of service, admit a group
against a host's capacity, install, start and stop it, export it to another
host. The library API (the CLI and a web console call the same functions):

    from governor.catalogue import Catalogue, capture, admit, install, start, stop
    with Catalogue() as cat:                       # $GOVERNOR_STATE_DIR/governor.db
        capture(cat, "web", ["/usr/bin/python3", "-m", "http.server", "8000"], duration=5)
        cat.create_group("shop", "silver", limits={"memory": "256MiB"})
        cat.assign("shop", "web")
        print(admit(cat, cat.spec("shop")).table())
        install(cat, "shop"); start(cat, "shop"); stop(cat, "shop")

Objects are dataclasses with as_dict(); errors are CatalogueError and
PolicyError (with .key naming the field) and AdmissionRefused (with
.admission, the table)."""
from .._errors import AdmissionRefused, CatalogueError
from .admission import Admission, admit
from .allocation import Allocation, ServiceClass, list_classes, load_class
from .capture import CaptureResult, capture
from .catalogue import App, Catalogue, Group, Host, Installed
from .export import ExportResult, Remote, export, remote_admission
from .host import capacity, facts
from .install import install, uninstall
from .runner import running, start, stop

__all__ = ["Catalogue", "App", "Group", "Installed", "Host", "Allocation", "ServiceClass",
           "Admission", "CaptureResult", "ExportResult", "Remote", "capture", "admit",
           "install", "uninstall", "start", "stop", "running", "export", "remote_admission",
           "list_classes", "load_class", "capacity", "facts", "CatalogueError",
           "AdmissionRefused"]
