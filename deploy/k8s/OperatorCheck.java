// Runs the Flink Kubernetes Operator's own validation of FlinkDeployment resources (what its
// admission webhook and reconciler refuse) on YAML files; deploy/k8s/validate.py starts it with
// the operator's jars on the class path. Prints "INVALID <file>: <reason>" per refused file.
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.FileInputStream;
import java.util.Optional;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.kubernetes.operator.api.FlinkDeployment;
import org.apache.flink.kubernetes.operator.config.FlinkConfigManager;
import org.apache.flink.kubernetes.operator.validation.DefaultValidator;

public class OperatorCheck {
    public static void main(String[] args) throws Exception {
        DefaultValidator validator =
                new DefaultValidator(new FlinkConfigManager(new Configuration()));
        int invalid = 0;
        for (String path : args) {
            FlinkDeployment deployment;
            try (FileInputStream in = new FileInputStream(path)) {
                deployment = Serialization.unmarshal(in, FlinkDeployment.class);
            }
            Optional<String> error = validator.validateDeployment(deployment);
            if (error.isPresent()) {
                System.out.println("INVALID " + path + ": " + error.get());
                invalid++;
            }
        }
        System.exit(invalid == 0 ? 0 : 1);
    }
}
