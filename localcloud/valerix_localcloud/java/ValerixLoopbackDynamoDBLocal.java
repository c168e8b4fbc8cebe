import java.lang.reflect.Field;

import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * DynamoDB Local, listening on 127.0.0.1 only.
 *
 * Its own main class (ServerRunner) builds a Jetty server with `new Server(port)`, which binds
 * every interface, and has no option to choose the host. This main builds the same server from
 * the same command line, sets the host of its connector(s) to loopback before starting it, and
 * refuses to start at all if it cannot (a newer DynamoDB Local with another layout must not
 * silently listen on the network). Only LocalStack, on this machine, talks to DynamoDB Local.
 * Telemetry is never configured here, so it stays off.
 */
public final class ValerixLoopbackDynamoDBLocal {
    private static final String HOST = "127.0.0.1";

    private ValerixLoopbackDynamoDBLocal() {
    }

    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server jetty = (Server) field.get(proxy);
        Connector[] connectors = jetty.getConnectors();
        if (connectors.length == 0) {
            throw new IllegalStateException("DynamoDB Local has no connector to bind to " + HOST);
        }
        for (Connector connector : connectors) {
            if (!(connector instanceof ServerConnector)) {
                throw new IllegalStateException("cannot bind DynamoDB Local connector " + connector + " to " + HOST);
            }
            ((ServerConnector) connector).setHost(HOST);
        }
        proxy.start();
    }
}
