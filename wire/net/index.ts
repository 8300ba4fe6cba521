export { listen, PeerServer, type ListenOptions, type TlsServerFiles } from './server.ts';
export { connect, ConnectError, type ConnectOptions, type ConnectErrorKind, type TlsClientFiles } from './client.ts';
export {
  Connection, defaultLogger, describeClose, closeReason, RAW_FRAME_TAG,
  type Logger, type CloseInfo, type PeerIdentity, type ConnectionOptions,
} from './connection.ts';
export { DEFAULTS } from './defaults.ts';
export { tlsServerFromEnv, tlsClientFromEnv } from './tls-env.ts';
export { FramePool } from './frame-pool.ts';
