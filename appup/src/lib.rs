//! relup-appup: release manifests, appup files and the planner.
