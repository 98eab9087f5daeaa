//! `switchyard lint --config FILE`: checks a config's routers for task
//! descriptions that will route badly, before they serve traffic.
