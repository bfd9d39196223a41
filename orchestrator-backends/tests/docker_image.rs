//! Our `FROM scratch` image against the local Docker engine (skips without one unless
//! `BANNOU_TEST_REQUIRE=docker`): it carries our labels and the static binary really runs in
//! the empty root (mimalloc and glibc linked in), printing its version on stdout.

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use futures::StreamExt;
use orchestrator_backends::containers::image::{
    BINARY_PATH, IMAGE_COMPONENT_LABEL, IMAGE_MANAGED_LABEL,
};
use orchestrator_backends::containers::testing::{docker_and_image, unique, with_cleanup};
use orchestrator_core::ports::backend::labels;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_binary_runs_in_the_empty_image() {
    let Some((docker, image)) = docker_and_image("the_static_binary_runs_in_the_empty_image").await
    else {
        return;
    };
    let inspected = docker.inspect_image(&image).await.expect("image exists");
    let config = inspected.config.expect("image config");
    assert_eq!(
        config.entrypoint.as_deref(),
        Some(&[BINARY_PATH.to_owned()][..])
    );
    assert_eq!(config.cmd.as_deref(), Some(&["serve".to_owned()][..]));
    let image_labels = config.labels.unwrap_or_default();
    assert_eq!(
        image_labels.get(IMAGE_MANAGED_LABEL).map(String::as_str),
        Some("true")
    );
    assert!(
        !image_labels.contains_key(labels::MANAGED),
        "containers inherit image labels: the image must not mark them ours"
    );
    assert_eq!(
        image_labels.get(IMAGE_COMPONENT_LABEL).map(String::as_str),
        Some("bannou-host")
    );

    let app = unique("image-version");
    let name = format!("bannou-{app}");
    with_cleanup(&docker, &app, None, async {
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec!["--version".to_owned()]),
            labels: Some(HashMap::from([
                (labels::MANAGED.to_owned(), "true".to_owned()),
                (labels::APP_ID.to_owned(), app.clone()),
            ])),
            host_config: Some(bollard::models::HostConfig {
                network_mode: Some("none".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .expect("create");
        docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .expect("start");
        let exit = tokio::time::timeout(
            Duration::from_secs(60),
            docker
                .wait_container(&created.id, None::<WaitContainerOptions>)
                .next(),
        )
        .await
        .expect("the container exits")
        .expect("a wait result")
        .expect("exit code 0");
        assert_eq!(exit.status_code, 0);
        let mut out = String::new();
        let mut logs = docker.logs(
            &created.id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: "all".to_owned(),
                ..Default::default()
            }),
        );
        while let Some(item) = logs.next().await {
            if let LogOutput::StdOut { message } = item.expect("log frame") {
                out.push_str(&String::from_utf8_lossy(&message));
            }
        }
        assert!(
            out.starts_with("bannou-host "),
            "--version prints on stdout, got {out:?}"
        );
        docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .expect("remove");
        println!(
            "checked: {image} ({} bytes) runs bannou-host --version: {}",
            inspected.size.unwrap_or(0),
            out.trim()
        );
    })
    .await;
}
