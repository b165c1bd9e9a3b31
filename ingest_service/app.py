"""Everything one ingest process holds, built once at start and passed down:
the connection pool, caches, the writers (readings and frames), the frame
store and rate limit, the notifier, telemetry, and the shutdown flag. No
module-level state, so a test can start two services.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import asyncpg

from ingest_service.batch import PreparedBatch
from ingest_service.catalog import SensorCatalog, StaleCatalog
from ingest_service.command_channels import CommandChannels
from ingest_service.frame_batch import PreparedFrames
from ingest_service.frame_pacing import FramePacer
from ingest_service.frame_writer import FrameCommit, FrameWriter
from ingest_service.group_commit import GroupCommitter
from ingest_service.notifier import CommitNotifier
from ingest_service.observability import IngestMetrics
from ingest_service.pg_time import install_codec
from ingest_service.prepare import Preparer
from ingest_service.rules import UnsupportedRules, load_rules
from ingest_service.settings import IngestSettings
from ingest_service.writer import BatchWriter, Commit
from sensormesh_core.access.device_tokens import DeviceTokens
from sensormesh_core.command_telemetry import CommandMetrics
from sensormesh_core.errors import NotFound, Unavailable
from sensormesh_core.storage.frame_blobs import FrameBlobStore, PostgresFrameBlobs
from sensormesh_core.storage.live_signal import FRAMES_CHANNEL
from sensormesh_core.storage.maintenance import Backend, maintain, storage_backend
from sensormesh_core.storage.outages import RETRYABLE_DATABASE_ERRORS
from sensormesh_core.storage.partitions import PartitionManager
from sensormesh_core.storage.rollups import RefreshReport, has_rollup_tables, refresh_rollups
from sensormesh_core.storage.schema import FRAME_TABLES
from sensormesh_core.telemetry import Telemetry

log = logging.getLogger(__name__)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset query (a round trip per batch).

    asyncpg still rolls back an open transaction on release; nothing in the
    ingest service sets session state (no SET, LISTEN, cursors or session
    advisory locks: partition DDL takes a transaction-scoped lock), so
    there is nothing else to reset.
    """


class IngestApp:
    """The ingest service's state. Create with `open`, end with `close`."""

    def __init__(
        self,
        settings: IngestSettings,
        pool: asyncpg.Pool,
        backend: Backend,
        telemetry: Telemetry,
        notifier: CommitNotifier | None,
        *,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        rollups: bool = False,
        frame_blobs: FrameBlobStore | None = None,
    ) -> None:
        """`rollups`: this service keeps the rollup tables (plain PostgreSQL,
        migration 0003); `connect` opens a connection of its own (the refresher's,
        the command signal's LISTEN); `frame_blobs` stores frame images (the
        PostgreSQL store by default)."""
        self.settings = settings
        self.pool = pool
        self.backend = backend
        self.tracer = telemetry.tracer("sensormesh.ingest")
        self.metrics = IngestMetrics(telemetry.meter("sensormesh.ingest"))
        self.command_metrics = CommandMetrics(telemetry.meter("sensormesh.commands"))
        self.notifier = notifier
        self.catalog = SensorCatalog()
        self.partitions = PartitionManager() if backend is Backend.PARTITIONED else None
        self.frame_partitions = PartitionManager(FRAME_TABLES) if backend is Backend.PARTITIONED else None
        self.auth = DeviceTokens(pool, settings.credential_cache_ttl.total_seconds())
        self.recheck_interval = settings.stream_recheck_interval.total_seconds()
        try:
            rules = load_rules()
        except UnsupportedRules as exc:
            log.warning(
                "event=fast_validation_off reason=%r (every reading goes through protovalidate)", str(exc)
            )
            rules = None
        self.preparer = Preparer(settings, self.catalog, pool, rules)
        self.writer = BatchWriter(pool, self.catalog, self.partitions, self.tracer, rollup_gate=rollups)
        self.committer = GroupCommitter(
            self.writer,
            self.tracer,
            self.track,
            concurrency=min(settings.ingest_commit_concurrency, settings.pool_max_size),
            max_batches=settings.ingest_commit_group_max,
        )
        self.frame_writer = FrameWriter(pool, frame_blobs or PostgresFrameBlobs(), self.frame_partitions)
        self.frame_pacer = FramePacer(settings.ingest_frame_rate, settings.ingest_frame_burst)
        self._connect = connect
        self.command_channels = CommandChannels(connect)
        self.rollups = rollups
        self.stopping = asyncio.Event()
        self.batches_prepared = 0  # UploadReadings batches decoded and queued for commit
        self._background: set[asyncio.Task[object]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: IngestSettings, database_url: str, telemetry: Telemetry) -> IngestApp:
        """Connect, check the schema, start the notifier and (plain PostgreSQL) maintenance."""
        pool = await asyncpg.create_pool(
            database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            init=install_codec,
            reset=_keep_session,
        )
        try:
            async with pool.acquire() as conn:
                backend = await storage_backend(conn)
                rollups = backend is Backend.PARTITIONED and await has_rollup_tables(conn)
        except asyncpg.UndefinedTableError as exc:
            await pool.close()
            raise RuntimeError("the database is not migrated; run `sensormesh db migrate`") from exc
        except BaseException:
            await pool.close()
            raise
        notifier = None
        if settings.ingest_notify:
            notifier = CommitNotifier(
                lambda: asyncpg.connect(database_url), settings.ingest_notify_window.total_seconds()
            )
            await notifier.start()
        app = cls(
            settings,
            pool,
            backend,
            telemetry,
            notifier,
            connect=lambda: asyncpg.connect(database_url),
            rollups=rollups,
        )
        try:
            await app.command_channels.start()
        except BaseException:
            await app.close()
            raise
        if app.partitions is not None:
            await app.maintain()
            app._maintenance = asyncio.create_task(app._maintain_every(settings.ingest_maintenance_interval))
        if app.rollups:
            app._refresher = asyncio.create_task(app._refresh_every(settings.ingest_rollup_refresh_interval))
        return app

    async def maintain(self) -> None:
        """Partitions ahead of time and past retention (plain PostgreSQL)."""
        async with self.pool.acquire() as conn:
            await maintain(conn, self.settings, self.partitions, frame_partitions=self.frame_partitions)

    async def _maintain_every(self, interval: timedelta) -> None:
        while True:
            await asyncio.sleep(interval.total_seconds())
            try:
                await self.maintain()
            except RETRYABLE_DATABASE_ERRORS as exc:  # an outage, reported once per run, not a bug
                log.warning("event=maintenance_failed reason=database_unavailable error=%r", exc)
            except Exception:  # keep ingesting; the next run retries
                log.exception("event=maintenance_failed")

    async def refresh_rollups(self) -> RefreshReport:
        """One rollup refresh (plain PostgreSQL), on a connection of its own:
        it takes session locks, which must never return to the pool."""
        conn = await self._connect()
        try:
            return await refresh_rollups(conn, self.settings)
        finally:
            await conn.close(timeout=5)

    async def _refresh_every(self, interval: timedelta) -> None:
        while True:
            await asyncio.sleep(interval.total_seconds())
            try:
                await self.refresh_rollups()
            except asyncpg.LockNotAvailableError:
                log.warning("event=rollup_refresh_skipped reason=gate_busy")
            except RETRYABLE_DATABASE_ERRORS as exc:
                log.warning("event=rollup_refresh_failed reason=database_unavailable error=%r", exc)
            except Exception:  # keep ingesting; the next run goes on from the watermarks
                log.exception("event=rollup_refresh_failed")

    async def commit(self, batch: PreparedBatch, reprepare: Callable[[], Awaitable[PreparedBatch]]) -> Commit:
        """Commit a batch, then hand its signal to the notifier.

        `reprepare` rebuilds the batch when the device was registered again
        since its sensor ids were cached.
        """
        try:
            try:
                result = await self.committer.commit(batch)
            except StaleCatalog:
                log.info("event=device_reregistered device=%s", batch.device_id)
                result = await self.committer.commit(await reprepare())
        except RETRYABLE_DATABASE_ERRORS as exc:
            log.warning("event=database_unavailable device=%s error=%r", batch.device_id, exc)
            raise Unavailable("the database is unavailable; retry from GetUploadOffset") from exc
        if result.rejected:
            first = result.rejected[0]
            log.warning(
                "event=readings_dead_lettered device=%s first_sequence=%d last_sequence=%d rejected=%d "
                "sequence=%d field=%s reason=%r",
                batch.device_id, batch.first_sequence, batch.last_sequence, len(result.rejected),
                first.sequence, first.field, first.reason,
            )  # fmt: skip
        if result.duplicates:
            log.info(
                "event=duplicates_dropped device=%s first_sequence=%d last_sequence=%d duplicates=%d mark=%d",
                batch.device_id, batch.first_sequence, batch.last_sequence, result.duplicates, result.mark,
            )  # fmt: skip
        if result.signal is not None and self.notifier is not None:
            self.notifier.publish(result.signal)
        if result.gap:
            self.metrics.sequence_gaps.add(1)
        return result

    async def commit_frames(self, batch: PreparedFrames) -> FrameCommit:
        """Commit a frame batch, then hand its signal to the notifier (the frames' channel)."""
        try:
            result = await self.frame_writer.commit(batch)
        except RETRYABLE_DATABASE_ERRORS as exc:
            log.warning("event=database_unavailable device=%s error=%r", batch.device_id, exc)
            raise Unavailable("the database is unavailable; retry from GetFrameUploadOffset") from exc
        for refused in result.refused:
            first = refused.violations[0]
            log.warning(
                "event=frame_refused device=%s sequence=%d field=%s reason=%r",
                batch.device_id, refused.sequence, first.field, first.description,
            )  # fmt: skip
        if result.duplicates:
            log.info(
                "event=frame_duplicates_dropped device=%s first_sequence=%d last_sequence=%d duplicates=%d",
                batch.device_id, batch.first_sequence, batch.last_sequence, result.duplicates,
            )  # fmt: skip
        self.metrics.record_frames(
            result.accepted, len(result.refused), result.duplicates, result.stored_bytes
        )
        if result.signal is not None and self.notifier is not None:
            self.notifier.publish(result.signal, FRAMES_CHANNEL)
        return result

    async def read_frame_mark(self, device_id: str) -> tuple[int, datetime | None]:
        """The device's committed frame sequence and when it last moved; NotFound if no such device."""
        return await self._read_offset("frame_offsets", device_id)

    def track(self, task: asyncio.Task[object]) -> None:
        """Keep `task` alive until it ends; `close` waits for it (in-flight commits)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for tracked tasks: batches already received finish committing."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def close(self) -> None:
        self.stopping.set()
        await self.drain()
        log.info(
            "event=batch_transactions transactions=%d batches=%d",
            self.committer.groups,
            self.committer.grouped,
        )
        for task in (self._maintenance, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.notifier is not None:
            await self.notifier.stop()
        await self.command_channels.stop()
        await self.pool.close()

    async def read_mark(self, device_id: str) -> tuple[int, datetime | None]:
        """The device's committed sequence and when it last moved; NotFound if no such device."""
        return await self._read_offset("upload_offsets", device_id)

    async def _read_offset(self, table: str, device_id: str) -> tuple[int, datetime | None]:
        """A mark from `table`; a device without a row there is at 0 (frames: none uploaded yet)."""
        try:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT coalesce(o.committed_sequence, 0) AS committed_sequence, o.update_time "
                    f"FROM devices d LEFT JOIN {table} o ON o.device_id = d.device_id WHERE d.device_id = $1",
                    device_id,
                )
        except RETRYABLE_DATABASE_ERRORS as exc:
            raise Unavailable("the database is unavailable; retry later") from exc
        if row is None:
            raise NotFound(f"device {device_id!r} does not exist")
        return int(row["committed_sequence"]), row["update_time"]
