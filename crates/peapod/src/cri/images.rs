//! `runtime.v1.ImageService` over the engine's image store, with containerd's behaviour:
//! a missing image is an empty `ImageStatus` (not an error), `RemoveImage` of a missing
//! image succeeds, `PullImage` returns the image id and takes the request's credentials
//! before the node's.

use std::sync::Arc;

use peapod_cri::v1::image_service_server::ImageService;
use peapod_cri::v1::{
    AuthConfig, FilesystemIdentifier, FilesystemUsage, Image, ImageFsInfoRequest,
    ImageFsInfoResponse, ImageSpec, ImageStatusRequest, ImageStatusResponse, ListImagesRequest,
    ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, UInt64Value,
};
use peapod_image::ImageRecord;
use tonic::{Request, Response, Status};

use super::{blocking, status_of};
use crate::engine::Engine;

pub struct Images {
    engine: Arc<Engine>,
}

impl Images {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// An image record as CRI's `Image`.
fn cri_image(r: &ImageRecord) -> Image {
    Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        spec: Some(ImageSpec {
            image: r.id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The image a spec names, if present.
fn find(engine: &Engine, spec: Option<&ImageSpec>) -> Result<Option<ImageRecord>, Status> {
    let name = spec.map(|s| s.image.as_str()).unwrap_or_default();
    if name.is_empty() {
        return Err(Status::invalid_argument(
            "image spec: image must not be empty",
        ));
    }
    let store = engine.images().map_err(|e| status_of(&e))?;
    Ok(store.resolve(name).ok())
}

/// The credentials of a `PullImage` request for the registry of `image`.
fn request_credentials(image: &str, auth: &AuthConfig) -> Option<(String, String, String)> {
    let registry = peapod_image::Reference::parse(image).ok()?.registry;
    let (user, pass) = if !auth.username.is_empty() {
        (auth.username.clone(), auth.password.clone())
    } else if !auth.auth.is_empty() {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.as_bytes())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        (u.to_string(), p.to_string())
    } else if !auth.identity_token.is_empty() {
        ("<token>".to_string(), auth.identity_token.clone())
    } else {
        return None;
    };
    Some((registry, user, pass))
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let engine = self.engine.clone();
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        blocking(move || {
            let store = engine.images().map_err(|e| status_of(&e))?;
            let images = match filter {
                Some(name) => store.resolve(&name).ok().into_iter().collect(),
                None => store.list().map_err(|e| Status::internal(e.to_string()))?,
            };
            Ok(Response::new(ListImagesResponse {
                images: images.iter().map(cri_image).collect(),
            }))
        })
        .await
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        blocking(move || {
            let found = find(&engine, req.image.as_ref())?;
            let mut info = std::collections::HashMap::new();
            if req.verbose {
                if let Some(r) = &found {
                    let store = engine.images().map_err(|e| status_of(&e))?;
                    let config = store
                        .config(r)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    let json =
                        serde_json::json!({ "imageSpec": config, "chainID": r.diff_ids.last() });
                    info.insert("info".to_string(), json.to_string());
                }
            }
            Ok(Response::new(ImageStatusResponse {
                image: found.as_ref().map(cri_image),
                info,
            }))
        })
        .await
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        blocking(move || {
            let name = req
                .image
                .as_ref()
                .map(|s| s.image.clone())
                .unwrap_or_default();
            if name.is_empty() {
                return Err(Status::invalid_argument(
                    "image spec: image must not be empty",
                ));
            }
            let mut options = engine.pull_options();
            if let Some((registry, user, pass)) = req
                .auth
                .as_ref()
                .and_then(|a| request_credentials(&name, a))
            {
                let mut first = peapod_image::Credentials::new();
                first.insert(&registry, &user, &pass);
                first.merge(std::mem::take(&mut options.credentials));
                options.credentials = first;
            }
            let store = engine.images().map_err(|e| status_of(&e))?;
            let pulled = store
                .pull(&name, &options, &mut |_| {})
                .map_err(|e| Status::unknown(format!("failed to pull image {name:?}: {e}")))?;
            Ok(Response::new(PullImageResponse {
                image_ref: pulled.id,
            }))
        })
        .await
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let engine = self.engine.clone();
        let req = request.into_inner();
        blocking(move || {
            let Some(found) = find(&engine, req.image.as_ref())? else {
                return Ok(Response::new(RemoveImageResponse {}));
            };
            let in_use: Vec<String> = engine
                .list()
                .map_err(|e| status_of(&e))?
                .into_iter()
                .filter(|c| c.config.image_id == found.id)
                .map(|c| c.config.name)
                .collect();
            if !in_use.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "image {} is in use by containers {}",
                    found.id,
                    in_use.join(", ")
                )));
            }
            let store = engine.images().map_err(|e| status_of(&e))?;
            store
                .remove(&found.id, &[], true)
                .map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(RemoveImageResponse {}))
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let engine = self.engine.clone();
        blocking(move || {
            let store = engine.images().map_err(|e| status_of(&e))?;
            let root = store.root().to_path_buf();
            let (bytes, inodes) = usage(&root);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or_default();
            let fs = FilesystemUsage {
                timestamp: now,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: root.display().to_string(),
                }),
                used_bytes: Some(UInt64Value { value: bytes }),
                inodes_used: Some(UInt64Value { value: inodes }),
            };
            Ok(Response::new(ImageFsInfoResponse {
                image_filesystems: vec![fs.clone()],
                container_filesystems: vec![fs],
            }))
        })
        .await
    }
}

/// Bytes and inodes used under `dir` (not following symlinks).
fn usage(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    let mut inodes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else {
                continue;
            };
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}
