/*
 * herd test support, for Debian's JMeter 2.13 only (production images carry JMeter 5.6).
 *
 * Debian 12 pairs JMeter 2.13 with XStream 1.4.20, whose security allow-list refuses every
 * JMeter class, so no plan loads. JMeter's NewDriver puts $JMETER_HOME/lib/*.jar before
 * lib/ext/*.jar on its class loader, so this class — same binary name as JMeter's private
 * SaveService$XStreamWrapper, same constructor signatures, same alias mapping — is loaded
 * instead of the original, and allows any type.
 */
package org.apache.jmeter.save;

import com.thoughtworks.xstream.XStream;
import com.thoughtworks.xstream.converters.reflection.ReflectionProvider;
import com.thoughtworks.xstream.mapper.MapperWrapper;
import com.thoughtworks.xstream.security.AnyTypePermission;
import org.apache.jmeter.util.NameUpdater;

final class SaveService$XStreamWrapper extends XStream {
    private SaveService$XStreamWrapper(ReflectionProvider reflectionProvider) {
        super(reflectionProvider);
        addPermission(AnyTypePermission.ANY);
    }

    /** The constructor SaveService calls (javac's synthetic accessor in the original). */
    SaveService$XStreamWrapper(ReflectionProvider reflectionProvider, SaveService$1 unused) {
        this(reflectionProvider);
    }

    @Override
    protected MapperWrapper wrapMapper(MapperWrapper next) {
        return new MapperWrapper(next) {
            @Override
            public Class realClass(String alias) {
                String fullName = SaveService.aliasToClass(alias);
                if (fullName != null) {
                    fullName = NameUpdater.getCurrentName(fullName);
                }
                return super.realClass(fullName == null ? alias : fullName);
            }

            @Override
            public String serializedClass(Class type) {
                if (type == null) {
                    return super.serializedClass(null);
                }
                String alias = SaveService.classToAlias(type.getName());
                return alias == null ? super.serializedClass(type) : alias;
            }
        };
    }
}
