"""REST handlers for /api/v1/jobs."""

import posixpath

from jupyter_server.auth.decorator import authorized
from tornado import iostream, web

from ..models import ArtifactQuery, DeleteQuery, JobQuery, JobSubmit, LogQuery, OutputQuery, SparkUi
from .base import BODY_EXPANSION, BODY_OVERHEAD_BYTES, DataHarbourHandler
from .notebooks import attachment

AUTH_RESOURCE = "dataharbour:jobs"
# Submit, restart and kill run or stop code: jupyter_server authorizes those as "execute",
# as it does for kernels. Reads stay "read".
RUN_CODE = "execute"


def spark_ui_proxy_path(base_url: str, job_id: str) -> str:
    """Where a job's driver UI is proxied on this server (no trailing slash)."""
    return f"{base_url}api/v1/jobs/{job_id}/spark-ui/proxy"


class JobsBaseHandler(DataHarbourHandler):
    auth_resource = AUTH_RESOURCE


class JobCollectionHandler(JobsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_json(await self.jobs.list_json(self.parse_query(JobQuery, list_fields=("state",))))

    @web.authenticated
    @authorized(RUN_CODE)
    async def post(self):
        max_bytes = self.jobs.config.max_code_bytes * BODY_EXPANSION + BODY_OVERHEAD_BYTES
        job = await self.jobs.submit(self.parse_body(JobSubmit, max_bytes))
        self.set_header("Location", self.request.path.rstrip("/") + "/" + job.id)
        self.write_model(job, status=202)


class JobHandler(JobsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str):
        self.write_model(await self.jobs.get(job_id))

    @web.authenticated
    @authorized(RUN_CODE)  # it may kill the job first
    async def delete(self, job_id: str):
        await self.jobs.delete(job_id, force=self.parse_query(DeleteQuery).force)
        self.set_status(204)
        self.finish()


class JobKillHandler(JobsBaseHandler):
    @web.authenticated
    @authorized(RUN_CODE)
    async def post(self, job_id: str):
        self.write_model(await self.jobs.kill(job_id))


class JobRestartHandler(JobsBaseHandler):
    @web.authenticated
    @authorized(RUN_CODE)
    async def post(self, job_id: str):
        self.write_model(await self.jobs.restart(job_id), status=202)


class JobLogsHandler(JobsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str):
        self.write_model(await self.jobs.logs(job_id, self.parse_query(LogQuery)))


class JobOutputHandler(JobsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str):
        query = self.parse_query(OutputQuery)
        output = await self.jobs.output(job_id, query)
        if query.format == "html":
            # Shown in a browser tab: the notebook's own HTML and scripts run in a sandbox, an
            # origin of their own, never with this server's cookies; framed by this server only.
            self.set_header("Content-Security-Policy", "sandbox allow-scripts; frame-ancestors 'self'")
            self.set_header("Content-Disposition", attachment(output.filename).replace("attachment", "inline", 1))
        else:
            self.set_header("Content-Disposition", attachment(output.filename))
        self.finish(output.body, set_content_type=output.content_type)


class JobSparkUiHandler(JobsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str):
        ui = await self.jobs.live_ui(job_id)
        proxy_url = spark_ui_proxy_path(self.base_url, job_id) + "/"
        self.write_model(
            SparkUi(
                job_id=ui.job_id,
                attempt=ui.attempt,
                state=ui.state,
                spark_app_id=ui.spark_app_id,
                url=ui.url,
                proxy_url=proxy_url,
            )
        )


class JobArtifactHandler(JobsBaseHandler):
    @web.authenticated
    @authorized
    async def get(self, job_id: str, path: str):
        query = self.parse_query(ArtifactQuery)
        download = await self.jobs.artifact(job_id, path, query.attempt)
        try:
            self.set_header("Content-Type", download.content_type)
            self.set_header("Content-Disposition", attachment(posixpath.basename(download.name)))
            # A program's file, served from this origin: never rendered with this server's cookies.
            self.set_header("Content-Security-Policy", "sandbox")
            self.set_header("X-Content-Type-Options", "nosniff")
            if download.size is not None:
                self.set_header("Content-Length", str(download.size))
            async for chunk in download.chunks():
                self.write(chunk)
                await self.flush()  # one chunk in memory at a time
        except iostream.StreamClosedError:
            return  # the client went away
        finally:
            download.close()
        self.finish(set_content_type=download.content_type)
