//! The CRI v1 path: `ListPodSandbox` → ready, newest sandbox → `PodSandboxStatus` (verbose)
//! → `info.pid`; with a container, `ListContainers` → `ContainerStatus` (verbose).

use crate::select::{self, Sandbox};
use crate::{Client, Error, PodInfo, PodRef, Target};
use k8s_cri::v1 as cri;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

type Rs = cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

fn rs(c: &Client) -> Rs {
    Rs::new(c.channel.clone())
}

pub(crate) fn version(c: &Client) -> Result<(), Error> {
    let mut rs = rs(c);
    c.call(
        "Version",
        rs.version(cri::VersionRequest {
            version: "v1".into(),
        }),
    )
    .map(|_| ())
}

fn sandboxes(c: &Client) -> Result<Vec<(Sandbox, cri::PodSandbox)>, Error> {
    let mut rs = rs(c);
    let list = c.call(
        "ListPodSandbox",
        rs.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    )?;
    Ok(list
        .items
        .into_iter()
        .map(|p| {
            let md = p.metadata.clone().unwrap_or_default();
            let ready = p.state == cri::PodSandboxState::SandboxReady as i32;
            let state = cri::PodSandboxState::try_from(p.state)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_else(|_| format!("state {}", p.state));
            (
                Sandbox {
                    id: p.id.clone(),
                    namespace: md.namespace,
                    name: md.name,
                    ready,
                    created_at: p.created_at,
                    state,
                },
                p,
            )
        })
        .collect())
}

/// PID, IP and netns path of a sandbox.
type Details = (Option<u32>, Option<IpAddr>, Option<PathBuf>);

/// PID, IP and netns path of a sandbox from its verbose status.
fn sandbox_details(c: &Client, id: &str) -> Result<Details, Error> {
    let mut rs = rs(c);
    let st = c.call(
        "PodSandboxStatus",
        rs.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        }),
    )?;
    let ip = st
        .status
        .as_ref()
        .and_then(|s| s.network.as_ref())
        .and_then(|n| n.ip.parse().ok());
    let info = verbose_info(&st.info);
    let pid = info.as_ref().and_then(pid_of);
    let netns = info.as_ref().and_then(|i| {
        i.get("runtimeSpec")
            .and_then(crate::netns_from_spec)
            .or_else(|| {
                // CRI-O puts the spec at the top level of info; some runtimes give netns directly.
                i.get("netNamespacePath")
                    .and_then(|p| p.as_str())
                    .map(PathBuf::from)
            })
    });
    Ok((pid, ip, netns))
}

fn verbose_info(info: &HashMap<String, String>) -> Option<serde_json::Value> {
    serde_json::from_str(info.get("info")?).ok()
}

fn pid_of(info: &serde_json::Value) -> Option<u32> {
    info.get("pid")?
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
}

pub(crate) fn resolve(c: &Client, pod: &PodRef) -> Result<Target, Error> {
    let all = sandboxes(c)?;
    let views: Vec<Sandbox> = all.iter().map(|(s, _)| s.clone()).collect();
    let (chosen, notes) = select::pick(&views, pod, &c.endpoint)?;
    let (sandbox_pid, ip, netns) = sandbox_details(c, &chosen.id)?;
    let mut target = Target {
        pod: pod.clone(),
        pid: 0,
        sandbox_id: chosen.id.clone(),
        container_id: None,
        ip,
        netns_path: netns,
        notes,
        runtime_process: crate::RuntimeProcess::Unknown,
    };
    match &pod.container {
        None => {
            target.pid = sandbox_pid.ok_or_else(|| Error::NoPid {
                what: "sandbox",
                id: chosen.id.clone(),
            })?;
        }
        Some(name) => {
            let (id, pid) = container(c, pod, &chosen.id, name)?;
            target.container_id = Some(id);
            target.pid = pid;
        }
    }
    if target.netns_path.is_none() {
        target.netns_path = Some(PathBuf::from(format!("/proc/{}/ns/net", target.pid)));
    }
    Ok(target)
}

fn container(c: &Client, pod: &PodRef, sandbox: &str, name: &str) -> Result<(String, u32), Error> {
    let mut rs = rs(c);
    let list = c.call(
        "ListContainers",
        rs.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: sandbox.into(),
                ..Default::default()
            }),
        }),
    )?;
    let running = cri::ContainerState::ContainerRunning as i32;
    let mut matching: Vec<&cri::Container> = list
        .containers
        .iter()
        .filter(|k| k.metadata.as_ref().is_some_and(|m| m.name == name) && k.state == running)
        .collect();
    matching.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let Some(k) = matching.first() else {
        return Err(Error::ContainerNotFound {
            pod: format!("{}/{}", pod.namespace, pod.name),
            container: name.into(),
            available: list
                .containers
                .iter()
                .map(|k| {
                    let state = cri::ContainerState::try_from(k.state)
                        .map(|s| {
                            s.as_str_name()
                                .trim_start_matches("CONTAINER_")
                                .to_lowercase()
                        })
                        .unwrap_or_default();
                    format!(
                        "{} ({state})",
                        k.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("?")
                    )
                })
                .collect(),
        });
    };
    let st = c.call(
        "ContainerStatus",
        rs.container_status(cri::ContainerStatusRequest {
            container_id: k.id.clone(),
            verbose: true,
        }),
    )?;
    let pid = verbose_info(&st.info)
        .as_ref()
        .and_then(pid_of)
        .ok_or_else(|| Error::NoPid {
            what: "container",
            id: k.id.clone(),
        })?;
    Ok((k.id.clone(), pid))
}

pub(crate) fn list(c: &Client) -> Result<Vec<PodInfo>, Error> {
    let mut all = sandboxes(c)?;
    all.sort_by_key(|(s, _)| std::cmp::Reverse(s.created_at));
    let mut out = Vec::with_capacity(all.len());
    for (s, _) in all {
        let (pid, ip, netns) = if s.ready {
            sandbox_details(c, &s.id)?
        } else {
            (None, None, None)
        };
        out.push(PodInfo {
            namespace: s.namespace,
            name: s.name,
            state: if s.ready { "Ready" } else { "NotReady" }.into(),
            pid,
            ip,
            netns_path: netns,
            sandbox_id: s.id,
        });
    }
    Ok(out)
}
