//! Sans-IO diagnosis engine for Kubernetes pod networking: flow table, TCP and DNS trackers, five detectors.
